package catalog

import (
	"reflect"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

func TestConvertSchema(t *testing.T) {
	got, err := convertSchema([]*proto.Attribute{
		{Name: "host", Type: "string", Required: true, Description: "server"},
		{Name: "port", Type: "number", DefaultJson: "2773"},
		{Name: "password", Type: "string", Sensitive: true},
		{Name: "interval", Type: "duration", DefaultJson: `"5s"`},
		{Name: "tags", Type: "list(string)", DefaultJson: `["a","b"]`},
		{Name: "labels", Type: "map(string)", DefaultJson: `{"k":"v"}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Schema{
		{Name: "host", Type: sdk.TypeString, Required: true, Description: "server"},
		{Name: "port", Type: sdk.TypeNumber, Default: float64(2773)},
		{Name: "password", Type: sdk.TypeString, Sensitive: true},
		{Name: "interval", Type: sdk.TypeDuration, Default: "5s"},
		{Name: "tags", Type: sdk.TypeListString, Default: []any{"a", "b"}},
		{Name: "labels", Type: sdk.TypeMapString, Default: map[string]any{"k": "v"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}

	for _, tc := range []struct {
		attr *proto.Attribute
		want string
	}{
		{&proto.Attribute{Name: "x", Type: "number", DefaultJson: "{"}, "not JSON"},
		{&proto.Attribute{Name: "x", Type: "number", DefaultJson: `"five"`}, "want a number"},
		{&proto.Attribute{Name: "x", Type: "complex"}, "unknown type"},
		{&proto.Attribute{Name: "Bad-Name", Type: "string"}, "name must match"},
	} {
		if _, err := convertSchema([]*proto.Attribute{tc.attr}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.attr, err, tc.want)
		}
	}
	if _, err := convertClass(&proto.ClassInfo{Name: "has space"}, &Binary{}); err == nil {
		t.Error("class name with a space accepted")
	}
}
