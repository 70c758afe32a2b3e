package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// AttrType is the type of one config attribute. The host uses it to decode
// and convert HCL and JSON values before a worker ever sees them.
type AttrType string

// The attribute types a schema can use.
const (
	TypeString     AttrType = "string"
	TypeNumber     AttrType = "number"
	TypeBool       AttrType = "bool"
	TypeDuration   AttrType = "duration" // a string such as "1.5s", parsed by time.ParseDuration
	TypeListString AttrType = "list(string)"
	TypeMapString  AttrType = "map(string)"
)

// Valid reports whether t is one of the known attribute types.
func (t AttrType) Valid() bool {
	switch t {
	case TypeString, TypeNumber, TypeBool, TypeDuration, TypeListString, TypeMapString:
		return true
	}
	return false
}

// Attribute describes one attribute of a class's config block.
type Attribute struct {
	// Name is the attribute's name in HCL and JSON, e.g. "port".
	Name string
	// Type is the attribute's type.
	Type AttrType
	// Required attributes must be set; they cannot have a Default.
	Required bool
	// Default is used when the attribute is not set. It is a JSON-shaped Go
	// value: string, float64, bool, []any of strings or map[string]any of
	// strings; a duration default is a string such as "5s". nil means none.
	Default any
	// Sensitive values are redacted by the host in logs, status, events and
	// errors. The worker receives the real value.
	Sensitive bool
	// Description is shown by `dynworkers classes`.
	Description string
}

// Schema is the ordered list of attributes a class accepts in its config
// block. Attributes not in the schema are rejected by the host.
type Schema []Attribute

// Lookup returns the attribute with the given name.
func (s Schema) Lookup(name string) (Attribute, bool) {
	for _, a := range s {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

var attrNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Validate checks that the schema itself is well formed: valid and unique
// names, known types, and defaults of the attribute's type.
func (s Schema) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, a := range s {
		if !attrNameRE.MatchString(a.Name) {
			errs = append(errs, fmt.Errorf("attribute %q: name must match %s", a.Name, attrNameRE))
		}
		if seen[a.Name] {
			errs = append(errs, fmt.Errorf("attribute %q: declared twice", a.Name))
		}
		seen[a.Name] = true
		if !a.Type.Valid() {
			errs = append(errs, fmt.Errorf("attribute %q: unknown type %q", a.Name, a.Type))
			continue
		}
		if a.Required && a.Default != nil {
			errs = append(errs, fmt.Errorf("attribute %q: a required attribute cannot have a default", a.Name))
		}
		if a.Default != nil {
			if err := checkValue(a.Type, a.Default); err != nil {
				errs = append(errs, fmt.Errorf("attribute %q: default: %w", a.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkValue reports whether v, a JSON-shaped value, fits type t.
func checkValue(t AttrType, v any) error {
	switch t {
	case TypeString:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("want a string, got %T", v)
		}
	case TypeNumber:
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("want a number, got %T", v)
		}
	case TypeBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want a bool, got %T", v)
		}
	case TypeDuration:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a duration string, got %T", v)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return err
		}
	case TypeListString:
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("want a list of strings, got %T", v)
		}
		for i, e := range l {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("element %d: want a string, got %T", i, e)
			}
		}
	case TypeMapString:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("want a map of strings, got %T", v)
		}
		for k, e := range m {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("key %q: want a string, got %T", k, e)
			}
		}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// SchemaOf derives a schema from a config struct type. Every exported field
// is an attribute; struct tags refine it:
//
//	type Config struct {
//		Host     string            `config:"host,required" help:"SMPP server host name"`
//		Port     int               `config:"port" default:"2773"`
//		Password string            `config:"password,sensitive"`
//		Interval time.Duration     `config:"interval" default:"5s"`
//		Tags     []string          `config:"tags" default:"[\"a\",\"b\"]"`
//		Labels   map[string]string `config:"labels"`
//		Internal string            `config:"-"` // not an attribute
//	}
//
// The config tag holds the attribute name (default: the field name in
// snake_case) and the options required and sensitive. The default tag holds
// the default: plain text for strings, numbers, bools and durations, JSON
// for lists and maps. The help tag is the description.
//
// Field types map to attribute types: string → string; all int, uint and
// float kinds → number; bool → bool; time.Duration → duration; []string →
// list(string); map[string]string → map(string). Any other field type is an
// error.
func SchemaOf(v any) (Schema, error) {
	if v == nil {
		return nil, nil
	}
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config type %s is not a struct", t)
	}
	fields, err := configFields(t)
	if err != nil {
		return nil, err
	}
	s := make(Schema, 0, len(fields))
	for _, f := range fields {
		s = append(s, f.attr)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("config type %s: %w", t, err)
	}
	return s, nil
}

type configField struct {
	index []int
	attr  Attribute
}

func configFields(t reflect.Type) ([]configField, error) {
	var out []configField
	var errs []error
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("config")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = snakeCase(sf.Name)
		}
		a := Attribute{Name: name, Description: sf.Tag.Get("help")}
		for opt := range strings.SplitSeq(opts, ",") {
			switch opt {
			case "":
			case "required":
				a.Required = true
			case "sensitive":
				a.Sensitive = true
			default:
				errs = append(errs, fmt.Errorf("field %s: unknown config tag option %q", sf.Name, opt))
			}
		}
		typ, err := attrTypeOf(sf.Type)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %s: %w", sf.Name, err))
			continue
		}
		a.Type = typ
		if d, ok := sf.Tag.Lookup("default"); ok {
			def, err := parseDefault(typ, d)
			if err != nil {
				errs = append(errs, fmt.Errorf("field %s: default %q: %w", sf.Name, d, err))
				continue
			}
			a.Default = def
		}
		out = append(out, configField{index: sf.Index, attr: a})
	}
	return out, errors.Join(errs...)
}

func attrTypeOf(t reflect.Type) (AttrType, error) {
	if t == durationType {
		return TypeDuration, nil
	}
	switch t.Kind() {
	case reflect.String:
		return TypeString, nil
	case reflect.Bool:
		return TypeBool, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return TypeNumber, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return TypeListString, nil
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return TypeMapString, nil
		}
	}
	return "", fmt.Errorf("unsupported config field type %s (use string, a number, bool, time.Duration, []string or map[string]string)", t)
}

func parseDefault(t AttrType, s string) (any, error) {
	switch t {
	case TypeString:
		return s, nil
	case TypeNumber:
		return strconv.ParseFloat(s, 64)
	case TypeBool:
		return strconv.ParseBool(s)
	case TypeDuration:
		if _, err := time.ParseDuration(s); err != nil {
			return nil, err
		}
		return s, nil
	case TypeListString, TypeMapString:
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("want JSON: %w", err)
		}
		return v, checkValue(t, v)
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

func snakeCase(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			// Start a new word at a lower→upper change, and at the last
			// capital of an acronym followed by a lower-case letter ("HTTPPort").
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// decodeConfig decodes a config JSON object, as the host sends it, into a
// new value of type t (a struct type), applying the schema's defaults for
// attributes the object lacks. Errors name the attribute.
func decodeConfig(t reflect.Type, raw []byte) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	fields, err := configFields(t)
	if err != nil {
		return v, err
	}
	obj := map[string]json.RawMessage{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return v, fmt.Errorf("config is not a JSON object: %w", err)
		}
	}
	var errs []error
	known := map[string]bool{}
	for _, f := range fields {
		known[f.attr.Name] = true
		msg, ok := obj[f.attr.Name]
		if !ok || string(msg) == "null" {
			if f.attr.Default != nil {
				msg, _ = json.Marshal(f.attr.Default)
			} else if f.attr.Required {
				errs = append(errs, fmt.Errorf("attribute %q is required", f.attr.Name))
				continue
			} else {
				continue
			}
		}
		if err := setField(v.FieldByIndex(f.index), f.attr.Type, msg); err != nil {
			errs = append(errs, fmt.Errorf("attribute %q: %w", f.attr.Name, err))
		}
	}
	for k := range obj {
		if !known[k] {
			errs = append(errs, fmt.Errorf("unsupported attribute %q", k))
		}
	}
	return v, errors.Join(errs...)
}

func setField(fv reflect.Value, t AttrType, msg json.RawMessage) error {
	switch t {
	case TypeDuration:
		var s string
		if err := json.Unmarshal(msg, &s); err != nil {
			return fmt.Errorf("want a duration string such as \"5s\"")
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	case TypeNumber:
		var n json.Number
		if err := json.Unmarshal(msg, &n); err != nil {
			return fmt.Errorf("want a number")
		}
		switch fv.Kind() {
		case reflect.Float32, reflect.Float64:
			f, err := n.Float64()
			if err != nil {
				return err
			}
			fv.SetFloat(f)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			i, err := strconv.ParseInt(n.String(), 10, 64)
			if err != nil || fv.OverflowInt(i) {
				return fmt.Errorf("%s does not fit a whole number of type %s", n, fv.Type())
			}
			fv.SetInt(i)
		default:
			u, err := strconv.ParseUint(n.String(), 10, 64)
			if err != nil || fv.OverflowUint(u) {
				return fmt.Errorf("%s does not fit a whole number of type %s", n, fv.Type())
			}
			fv.SetUint(u)
		}
		return nil
	}
	p := reflect.New(fv.Type())
	if err := json.Unmarshal(msg, p.Interface()); err != nil {
		return fmt.Errorf("want %s", t)
	}
	fv.Set(p.Elem())
	return nil
}
