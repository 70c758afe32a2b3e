package monitor

import "testing"

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"messages_sent":   "messages_sent",
		"Messages Sent":   "messages_sent",
		"http.latency-ms": "http.latency_ms",
		"..a..b.":         "a.b",
		"héllo/wörld":     "h_llo_w_rld",
		"../../bin/sh":    "_._bin_sh",
		"":                "",
		"...":             "",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrefixes(t *testing.T) {
	if got := HostPrefix("Prod", "web-1.example.com"); got != "dynworkers.prod.web_1_example_com" {
		t.Errorf("HostPrefix = %q", got)
	}
	if got := WorkerPrefix("prod", "", "SMPP transport"); got != "dynworkers.prod.unknown.worker.smpp_transport" {
		t.Errorf("WorkerPrefix = %q", got)
	}
}
