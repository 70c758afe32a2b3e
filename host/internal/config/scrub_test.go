package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestScrubJSON(t *testing.T) {
	secrets := []string{"s3cr3t-pw", "7351"}
	tests := []struct{ in, want string }{
		{`{"password":"s3cr3t-pw"}`, `{"password":"(sensitive)"}`},
		{`{"bound":"smpp://u:s3cr3t-pw@host","n":3}`, `{"bound":"smpp://u:(sensitive)@host","n":3}`},
		{`{"s3cr3t-pw":true,"list":["a","xs3cr3t-pwx"]}`, `{"(sensitive)":true,"list":["a","x(sensitive)x"]}`},
		{`{"pin":7351,"other":7352}`, `{"other":7352,"pin":"(sensitive)"}`},
		{`{}`, `{}`},
	}
	for _, tt := range tests {
		got, ok := ScrubJSON(json.RawMessage(tt.in), secrets)
		if !ok || string(got) != tt.want {
			t.Errorf("ScrubJSON(%s) = %s, %v; want %s", tt.in, got, ok, tt.want)
		}
		if strings.Contains(string(got), "s3cr3t") {
			t.Errorf("ScrubJSON(%s) kept the secret: %s", tt.in, got)
		}
	}
	if _, ok := ScrubJSON(json.RawMessage(`{"password":"s3cr3t-pw"`), secrets); ok {
		t.Error("ScrubJSON accepted invalid JSON")
	}
}
