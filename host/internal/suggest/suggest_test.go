package suggest

import "testing"

func TestClosest(t *testing.T) {
	known := []string{"echo", "hello", "vumi.transports.smpp.SmppTransport", "Telnet", "mode", "interval"}
	tests := []struct{ in, want string }{
		{"ehco", "echo"},
		{"telnet", "Telnet"},
		{"SmppTransport", "vumi.transports.smpp.SmppTransport"},
		{"intervall", "interval"},
		{"mood", "mode"},
		{"something-else", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.in, known); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"héllo", "hello", 1}} {
		if got := Levenshtein(tt.a, tt.b); got != tt.d {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.d)
		}
	}
}
