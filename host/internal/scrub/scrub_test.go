package scrub

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestString(t *testing.T) {
	s := New(`pa"ss\word`, "ab", "7351", "")
	tests := []struct{ in, want string }{
		{`login with pa"ss\word now`, "login with (sensitive) now"},
		{`quoted "pa\"ss\\word"`, `quoted "(sensitive)"`},                 // %q and JSON
		{`url http://u:pa%22ss%5Cword@h/`, `url http://u:(sensitive)@h/`}, // URL-escaped
		{"ab", "(sensitive)"},             // a short value, whole
		{"tab cab ab", "tab cab ab"},      // a short value in text: kept
		{"pin 7351!", "pin (sensitive)!"}, // 4 bytes: replaced in text
		{"nothing here", "nothing here"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := s.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var none *Scrubber
	if none.String("pa\"ss") != "pa\"ss" || !none.Empty() || New("") != nil {
		t.Error("a nil or empty Scrubber changed something")
	}
}

func TestTrimPartial(t *testing.T) {
	s := New("s3cr3t-value")
	for in, want := range map[string]string{
		"cut at s3cr3t-va":           "cut at ",
		"cut at s3":                  "cut at ",
		"whole s3cr3t-value then s3": "whole (sensitive) then ",
		"nothing to cut":             "nothing to cut",
	} {
		if got := s.TrimPartial(in); got != want {
			t.Errorf("TrimPartial(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValueAndJSON(t *testing.T) {
	s := New("s3cr3t-pw", "42")
	v := s.Value(map[string]any{
		"pw": "s3cr3t-pw", "pin": float64(42), "port": float64(4242), "list": []any{"x s3cr3t-pw", "42"},
		"s3cr3t-pw": true, "err": errors.New("bad s3cr3t-pw"),
	}).(map[string]any)
	if v["pw"] != Redacted || v["pin"] != Redacted || v["port"] != float64(4242) || v["(sensitive)"] != true ||
		v["list"].([]any)[0] != "x (sensitive)" || v["list"].([]any)[1] != Redacted || v["err"] != "bad (sensitive)" {
		t.Errorf("Value = %v", v)
	}
	out, ok := s.JSON([]byte(`{"a":"s3cr3t-pw","n":42,"m":{"k":"42 and s3cr3t-pw"}}`))
	if !ok || string(out) != `{"a":"(sensitive)","m":{"k":"42 and (sensitive)"},"n":"(sensitive)"}` {
		t.Errorf("JSON = %s, %v", out, ok)
	}
	if _, ok := s.JSON([]byte(`{"a":`)); ok {
		t.Error("JSON accepted invalid JSON")
	}
	if _, ok := s.JSON([]byte(`{"a":1} {"b":2}`)); ok {
		t.Error("JSON accepted trailing data")
	}
	// Numbers come back as written: an id past 2^53 is not rounded, a
	// pid is not 1.003307e+06, and a number is redacted only whole.
	out, ok = s.JSON([]byte(`{"id":9007199254740993,"pid":1003307,"ratio":0.25,"big":1e300,"pin":42,"port":4242}`))
	if want := `{"big":1e300,"id":9007199254740993,"pid":1003307,"pin":"(sensitive)","port":4242,"ratio":0.25}`; !ok || string(out) != want {
		t.Errorf("JSON = %s, %v; want %s", out, ok, want)
	}
}

func TestMerge(t *testing.T) {
	m := Merge(New("first-secret"), New("second-secret"))
	if got := m.String("first-secret second-secret"); got != "(sensitive) (sensitive)" {
		t.Errorf("merged = %q", got)
	}
	if Merge(nil, nil) != nil {
		t.Error("Merge of nothing is not nil")
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	l := Logger(base, New("s3cr3t-pw", "ab"))
	l.Named("w").With("url", "x://u:s3cr3t-pw@h").Info("using s3cr3t-pw", "pw", "s3cr3t-pw", "short", "ab", "error", errors.New("s3cr3t-pw refused"))
	l.StandardLogger(nil).Print("std s3cr3t-pw")
	got := buf.String()
	if strings.Contains(got, "s3cr3t") || !strings.Contains(got, `short="(sensitive)"`) || !strings.Contains(got, "std (sensitive)") {
		t.Errorf("log:\n%s", got)
	}
	if Logger(base, nil) != base {
		t.Error("an empty Scrubber wrapped the logger")
	}
}
