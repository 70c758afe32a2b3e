// Package vumiref is package vumi's codec as it was before the hand-written
// one (issue 14): TransportUserMessage and TransportEvent with *string
// fields, decoded and encoded with encoding/json. It is kept, unchanged but
// for the package name, as the reference the tests of package vumi check
// the new codec against (FuzzAgainstReference): the same messages accepted,
// the same errors, the same bytes written. Nothing else uses it.
package vumiref
