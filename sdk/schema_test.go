package sdk

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

type smppConfig struct {
	Host     string            `config:"host,required" help:"server"`
	Port     int               `config:"port" default:"2773"`
	Password string            `config:"password,sensitive"`
	Interval time.Duration     `config:"interval" default:"5s"`
	Tags     []string          `config:"tags" default:"[\"a\",\"b\"]"`
	Labels   map[string]string `config:"labels"`
	Ratio    float64
	HTTPPort uint16
	Skipped  string `config:"-"`
	hidden   string //nolint:unused // unexported fields are not attributes
}

func TestSchemaOf(t *testing.T) {
	s, err := SchemaOf(smppConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := Schema{
		{Name: "host", Type: TypeString, Required: true, Description: "server"},
		{Name: "port", Type: TypeNumber, Default: 2773.0},
		{Name: "password", Type: TypeString, Sensitive: true},
		{Name: "interval", Type: TypeDuration, Default: "5s"},
		{Name: "tags", Type: TypeListString, Default: []any{"a", "b"}},
		{Name: "labels", Type: TypeMapString},
		{Name: "ratio", Type: TypeNumber},
		{Name: "http_port", Type: TypeNumber},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("schema:\n got %#v\nwant %#v", s, want)
	}
}

func TestSchemaOfErrors(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"not a struct", 3, "is not a struct"},
		{"bad type", struct{ C chan int }{}, "field C: unsupported config field type chan int"},
		{"bad option", struct {
			A string `config:"a,secret"`
		}{}, `unknown config tag option "secret"`},
		{"bad default", struct {
			D time.Duration `default:"5 seconds"`
		}{}, `field D: default "5 seconds"`},
		{"required with default", struct {
			A string `config:"a,required" default:"x"`
		}{}, "a required attribute cannot have a default"},
		{"duplicate", struct {
			A string `config:"x"`
			B string `config:"x"`
		}{}, `attribute "x": declared twice`},
		{"bad name", struct {
			A string `config:"Bad-Name"`
		}{}, `attribute "Bad-Name": name must match`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SchemaOf(tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	v, err := decodeConfig(reflect.TypeFor[smppConfig](), []byte(`{"host":"h","password":"p","labels":{"k":"v"},"ratio":0.5,"http_port":8080}`))
	if err != nil {
		t.Fatal(err)
	}
	got := v.Interface().(smppConfig)
	want := smppConfig{Host: "h", Port: 2773, Password: "p", Interval: 5 * time.Second,
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"}, Ratio: 0.5, HTTPPort: 8080}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string
	}{
		{"missing required", `{}`, []string{`attribute "host" is required`}},
		{"fraction into int", `{"host":"h","port":1.5}`, []string{`attribute "port": 1.5 does not fit a whole number of type int`}},
		{"overflow", `{"host":"h","http_port":70000}`, []string{`attribute "http_port": 70000 does not fit`}},
		{"bad duration", `{"host":"h","interval":"soon"}`, []string{`attribute "interval": time: invalid duration "soon"`}},
		{"unknown", `{"host":"h","hots":"x"}`, []string{`unsupported attribute "hots"`}},
		{"all at once", `{"port":"x","tags":"y"}`, []string{`"host" is required`, `attribute "port": want a number`, `attribute "tags": want list(string)`}},
		{"not an object", `[1]`, []string{"config is not a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeConfig(reflect.TypeFor[smppConfig](), []byte(tt.json))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSensitiveValueNotInDecodeErrors(t *testing.T) {
	_, err := decodeConfig(reflect.TypeFor[smppConfig](), []byte(`{"host":"h","password":12345678}`))
	if err == nil || strings.Contains(err.Error(), "12345678") {
		t.Fatalf("err = %v: want an error that does not echo the value", err)
	}
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{"Host": "host", "HTTPPort": "http_port", "SystemID": "system_id", "maxRetries": "max_retries", "A": "a"} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}
