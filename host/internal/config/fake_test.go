package config

import (
	"fmt"
	"slices"
	"sort"

	"github.com/dynworkers/dynworkers/sdk"
)

// fakeClasses is a ClassResolver (and ClassLister) with a few classes.
type fakeClasses struct {
	classes map[string]sdk.Schema
	aliases map[string]string
}

var (
	_ ClassResolver = fakeClasses{}
	_ ClassLister   = fakeClasses{}
)

var smppSchema = sdk.Schema{
	{Name: "host", Type: sdk.TypeString, Required: true},
	{Name: "port", Type: sdk.TypeNumber, Default: 2773.0},
	{Name: "username", Type: sdk.TypeString},
	{Name: "password", Type: sdk.TypeString, Sensitive: true},
	{Name: "system_id", Type: sdk.TypeString},
	{Name: "interval", Type: sdk.TypeDuration, Default: "5s"},
	{Name: "tags", Type: sdk.TypeListString},
	{Name: "labels", Type: sdk.TypeMapString},
}

var vaultSchema = sdk.Schema{
	{Name: "token", Type: sdk.TypeString, Required: true, Sensitive: true},
	{Name: "pin", Type: sdk.TypeNumber, Sensitive: true},
	{Name: "rotate", Type: sdk.TypeDuration, Sensitive: true},
	{Name: "enabled", Type: sdk.TypeBool, Default: true},
}

func testClasses() fakeClasses {
	return fakeClasses{
		classes: map[string]sdk.Schema{
			"echo":  {{Name: "prefix", Type: sdk.TypeString, Default: "echo: "}},
			"smpp":  smppSchema,
			"vault": vaultSchema,
		},
		aliases: map[string]string{
			"vumi.workers.smpp.transport.SMPPTransport": "smpp",
			"vumi.transports.smpp.SmppTransport":        "smpp",
		},
	}
}

func (f fakeClasses) ResolveClass(name string) (string, sdk.Schema, error) {
	if name == "dup" {
		return "", nil, fmt.Errorf(`class "dup" is offered by two binaries, bin/plugins/a and bin/plugins/b`)
	}
	if c, ok := f.aliases[name]; ok {
		name = c
	}
	s, ok := f.classes[name]
	if !ok {
		return "", nil, fmt.Errorf("unknown class %q", name)
	}
	return name, s, nil
}

func (f fakeClasses) ClassNames() []string {
	names := []string{"dup"}
	for n := range f.classes {
		names = append(names, n)
	}
	for a := range f.aliases {
		names = append(names, a)
	}
	sort.Strings(names)
	return slices.Compact(names)
}
