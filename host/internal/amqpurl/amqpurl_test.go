package amqpurl

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		secrets         []string // none of these may appear in the result
	}{
		{name: "plain", raw: "amqp://guest:s3cret@127.0.0.1:5672/vh",
			want: "amqp://guest:xxxxx@127.0.0.1:5672/vh", secrets: []string{"s3cret"}},
		{name: "amqps", raw: "amqps://user:s3cret@broker.example:5671/",
			want: "amqps://user:xxxxx@broker.example:5671/", secrets: []string{"s3cret"}},
		{name: "upper-case scheme", raw: "AMQP://user:s3cret@h/",
			want: "amqp://user:xxxxx@h/", secrets: []string{"s3cret"}},
		{name: "no password", raw: "amqp://host/", want: "amqp://host/"},
		{name: "user without password", raw: "amqp://guest@host/", want: "amqp://guest@host/"},
		{name: "no user information", raw: "amqp://", want: "amqp://"},
		{name: "empty password", raw: "amqp://guest:@host/", want: "amqp://guest:xxxxx@host/"},
		{name: "password only", raw: "amqp://:s3cret@host/", want: "amqp://:xxxxx@host/", secrets: []string{"s3cret"}},
		{name: "ipv6 host", raw: "amqp://u:s3cret@[::1]:5672/v", want: "amqp://u:xxxxx@[::1]:5672/v", secrets: []string{"s3cret"}},
		{name: "percent-encoded password", raw: "amqp://u:p%40ss%2Fw%3Ard@h/%2f",
			want: "amqp://u:xxxxx@h/%2f", secrets: []string{"p%40ss", "p@ss", "ss/w", "w:rd", "w%3Ard"}},
		{name: "unescaped @ in password", raw: "amqp://u:p@ssw@rd@h/",
			want: "amqp://u:xxxxx@h/", secrets: []string{"p@ss", "ssw", "w@rd"}},
		{name: "unescaped : in password", raw: "amqp://u:pa:ss@h/", want: "amqp://u:xxxxx@h/", secrets: []string{"pa:ss"}},
		{name: "bad percent escape", raw: "amqp://u:p%zzsecret@h/", want: Invalid, secrets: []string{"p%zz", "secret"}},
		{name: "unescaped / in password", raw: "amqp://u:12/secret@h/", want: Invalid, secrets: []string{"12/secret", "secret"}},
		{name: "unescaped / in password, port-like", raw: "amqp://u:1234/secret@h", want: Invalid, secrets: []string{"1234", "secret"}},
		{name: "unescaped @ and / in password", raw: "amqp://u:a@b/secret@h/", want: Invalid, secrets: []string{"b/secret", "secret"}},
		{name: ":// in password", raw: "amqp://u:a://secret@h/", want: Invalid, secrets: []string{"a://", "secret"}},
		{name: "unescaped ? in password", raw: "amqp://u:1?secret@h/", want: Invalid, secrets: []string{"secret"}},
		{name: "unescaped # in password", raw: "amqp://u:1#secret@h/", want: Invalid, secrets: []string{"secret"}},
		{name: "space in password", raw: "amqp://u:sec ret@h/", want: Invalid, secrets: []string{"sec ret"}},
		{name: "no scheme", raw: "guest:s3cret@localhost:5672", want: Invalid, secrets: []string{"s3cret"}},
		{name: "scheme-relative", raw: "//guest:s3cret@localhost:5672/", want: Invalid, secrets: []string{"s3cret"}},
		{name: "other scheme", raw: "http://guest:s3cret@h/", want: Invalid, secrets: []string{"s3cret"}},
		{name: "opaque", raw: "amqp:guest:s3cret@h", want: Invalid, secrets: []string{"s3cret"}},
		{name: ":// later in a path", raw: "amqp:/x://guest:s3cret@h", want: Invalid, secrets: []string{"s3cret"}},
		{name: "control character", raw: "amqp://u:s3cret\x00@h/", want: Invalid, secrets: []string{"s3cret"}},
		{name: "empty", raw: "", want: Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.raw)
			if got != tc.want {
				t.Errorf("Redact(%q) = %q, want %q", tc.raw, got, tc.want)
			}
			for _, s := range tc.secrets {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q) = %q shows %q", tc.raw, got, s)
				}
			}
		})
	}
}

// A password written into a URL, percent-encoded or by hand, never shows in
// Redact's result, whatever characters it holds.
func FuzzRedactHidesPassword(f *testing.F) {
	f.Add("guest", "s3cret", "/vh")
	f.Add("u", "12/b@c", "")
	f.Add("u", "a@b/c", "/")
	f.Add("u", "a://b", "/")
	f.Add("u", "1?b", "/")
	f.Fuzz(func(t *testing.T, user, pw, rest string) {
		// The password may appear in the parts that are not secret (as "00"
		// in a host "h00"): only a password that no correct result can hold
		// is looked for.
		var public []string
		for _, p := range []string{"amqp://" + user + ":" + Mask + "@h" + rest, "amqps://" + url.UserPassword(user, Mask).String() + "@h" + rest} {
			public = append(public, p)
			if u, err := url.Parse(p); err == nil {
				public = append(public, u.String())
			}
		}
		if len(pw) < 3 || strings.Contains(strings.Join(append(public, Invalid), " "), pw) {
			t.Skip()
		}
		for _, raw := range []string{
			"amqp://" + user + ":" + pw + "@h" + rest,
			"amqps://" + url.UserPassword(user, pw).String() + "@h" + rest,
		} {
			if got := Redact(raw); strings.Contains(got, pw) {
				t.Fatalf("Redact(%q) = %q shows the password %q", raw, got, pw)
			}
		}
	})
}
