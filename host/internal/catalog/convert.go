package catalog

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

// convertClass turns a described class into a Class of binary b, checking
// what a plugin not built with the sdk could get wrong.
func convertClass(ci *proto.ClassInfo, b *Binary) (*Class, error) {
	if !validName(ci.GetName()) {
		return nil, fmt.Errorf("class name %q is not valid", ci.GetName())
	}
	for _, a := range ci.GetAliases() {
		if !validName(a) {
			return nil, fmt.Errorf("class %q: alias %q is not valid", ci.GetName(), a)
		}
	}
	schema, err := convertSchema(ci.GetSchema())
	if err != nil {
		return nil, fmt.Errorf("class %q: %w", ci.GetName(), err)
	}
	return &Class{
		Name:        ci.GetName(),
		Aliases:     ci.GetAliases(),
		Description: ci.GetDescription(),
		Version:     ci.GetVersion(),
		Schema:      schema,
		Binary:      b,
	}, nil
}

func validName(n string) bool {
	return n != "" && !strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// convertSchema turns a described schema into an sdk.Schema: default_json
// becomes a JSON-shaped Go value, and the result must pass Validate.
func convertSchema(attrs []*proto.Attribute) (sdk.Schema, error) {
	s := make(sdk.Schema, 0, len(attrs))
	for _, a := range attrs {
		sa := sdk.Attribute{
			Name:        a.GetName(),
			Type:        sdk.AttrType(a.GetType()),
			Required:    a.GetRequired(),
			Sensitive:   a.GetSensitive(),
			Description: a.GetDescription(),
		}
		if d := a.GetDefaultJson(); d != "" {
			if err := json.Unmarshal([]byte(d), &sa.Default); err != nil {
				return nil, fmt.Errorf("attribute %q: default %q is not JSON: %w", a.GetName(), d, err)
			}
		}
		s = append(s, sa)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config schema: %w", err)
	}
	return s, nil
}
