package config

import (
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/sdk"
)

// resuggest replaces HCL's "Did you mean" hint in diagnostics about an
// attribute the schema does not declare with suggest.Closest's: HCL offers
// the first attribute within its threshold in the order of the spec, a
// map, so "hoyt" got "port" or "host" from one run to the next. As HCL,
// it suggests only attributes that the body does not set (attrs).
func resuggest(diags hcl.Diagnostics, schema sdk.Schema, attrs map[string]*hcl.Attribute) {
	var names []string
	for _, a := range schema {
		if attrs[a.Name] == nil {
			names = append(names, a.Name)
		}
	}
	for _, d := range diags {
		var prefix, after string
		switch d.Summary {
		case "Unsupported argument": // native syntax
			prefix, after = "An argument named ", " is not expected here."
		case "Extraneous JSON object property": // JSON
			prefix, after = "No argument or block type is named ", "."
		default:
			continue
		}
		rest, ok := strings.CutPrefix(d.Detail, prefix)
		if !ok {
			continue
		}
		quoted, err := strconv.QuotedPrefix(rest)
		if err != nil || !strings.HasPrefix(rest[len(quoted):], after) {
			continue
		}
		name, err := strconv.Unquote(quoted)
		if err != nil {
			continue
		}
		d.Detail = prefix + quoted + after + didYouMean(name, names)
	}
}

// resuggestFunction replaces HCL's "Did you mean" hint for a call to an
// unknown function with suggest.Closest's: HCL offers the first function
// within its threshold in the order of the evaluation context's function
// map, so "Xn" got "min" or "env" from one run to the next.
func resuggestFunction(diags hcl.Diagnostics) {
	const prefix = "There is no function named "
	var names []string
	for _, d := range diags {
		if d.Summary != "Call to unknown function" {
			continue
		}
		rest, ok := strings.CutPrefix(d.Detail, prefix)
		if !ok {
			continue
		}
		quoted, err := strconv.QuotedPrefix(rest)
		if err != nil || !strings.HasPrefix(rest[len(quoted):], ".") {
			continue // such as `There is no function named "f" in namespace x::.`
		}
		name, err := strconv.Unquote(quoted)
		if err != nil {
			continue
		}
		if names == nil {
			for n := range Functions("") {
				names = append(names, n)
			}
		}
		d.Detail = prefix + quoted + "." + didYouMean(name, names)
	}
}
