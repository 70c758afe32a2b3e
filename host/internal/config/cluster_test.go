package config

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

const clusterPassword = "etcd-pw-" + secretMarker

// clusterDir makes a directory with a password file, a secrets key and a
// CA with a client pair, all of mode 0600 where they hold secrets.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writePrivate(t, filepath.Join(dir, "etcd.pw"), clusterPassword+"\n")
	writePrivate(t, filepath.Join(dir, "cluster.key"), strings.Repeat("ab", 32)+"\n")
	ca := brokertest.NewCA(t, dir, "etcd")
	ca.Client(t, dir, "client")
	return dir
}

func writePrivate(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// loadCluster loads src as c.hcl in dir; it returns the config and the
// diagnostics, one per line as "file:line:col: summary: detail".
func loadCluster(t *testing.T, dir, src string) (*Config, string) {
	t.Helper()
	path := filepath.Join(dir, "c.hcl")
	writeFile(t, path, src)
	cfg, diags := Load(path, testClasses())
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "%s: %s: %s\n", position(*d.Subject), d.Summary, d.Detail)
	}
	if (cfg == nil) != diags.HasErrors() {
		t.Fatalf("Load = %v with errors %v", cfg != nil, diags.HasErrors())
	}
	return cfg, b.String()
}

func TestClusterAbsent(t *testing.T) {
	cfg, diags := loadCluster(t, t.TempDir(), "system_id = \"s\"\n")
	if cfg == nil || diags != "" {
		t.Fatal(diags)
	}
	if cfg.Cluster != nil {
		t.Errorf("Cluster = %v without a cluster block, want nil", cfg.Cluster)
	}
}

func TestClusterDefaults(t *testing.T) {
	// system_id after the block: the default prefix uses it all the same.
	cfg, diags := loadCluster(t, t.TempDir(), "cluster {\n  endpoints = [\"127.0.0.1:2379\"]\n}\nsystem_id = \"prod\"\n")
	if cfg == nil {
		t.Fatal(diags)
	}
	c := cfg.Cluster
	want := ClusterConfig{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/dynworkers/prod/", LeaseTTL: 10 * time.Second, DialTimeout: 5 * time.Second}
	if c == nil || fmt.Sprint(c.Endpoints) != fmt.Sprint(want.Endpoints) || c.Prefix != want.Prefix || c.LeaseTTL != want.LeaseTTL ||
		c.DialTimeout != want.DialTimeout || c.MaxWorkers != 0 || c.Labels != nil || c.Username != "" || c.Password != "" ||
		c.TLS != nil || c.SecretsKeyFile != "" {
		t.Fatalf("cluster = %+v, want %+v", c, want)
	}
	if c.Range.Start.Line != 1 || !strings.HasSuffix(c.Range.Filename, "c.hcl") {
		t.Errorf("range = %v", c.Range)
	}
	if tc, err := c.ClientTLS(); tc != nil || err != nil {
		t.Errorf("ClientTLS without TLS = %v, %v; want nil, nil", tc, err)
	}
	if DefaultPrefix("global") != "/dynworkers/global/" {
		t.Errorf("DefaultPrefix = %q", DefaultPrefix("global"))
	}
}

func TestClusterFull(t *testing.T) {
	dir := clusterDir(t)
	src := `cluster {
  endpoints        = ["https://etcd-1:2379", "etcd-2:2379"]
  prefix           = "/systems/a/"
  lease_ttl        = "4s"
  dial_timeout     = "2s"
  max_workers      = 50
  labels           = { zone = "a", "rack.id" = "r-1" }
  username         = "dynworkers"
  password_file    = "etcd.pw"
  secrets_key_file = "cluster.key"
  tls {
    ca_file     = "etcd-ca.pem"
    cert_file   = "client.pem"
    key_file    = "client-key.pem"
    server_name = "etcd.internal"
  }
}
`
	cfg, diags := loadCluster(t, dir, src)
	if cfg == nil || diags != "" {
		t.Fatal(diags)
	}
	c := cfg.Cluster
	if fmt.Sprint(c.Endpoints) != "[https://etcd-1:2379 etcd-2:2379]" || c.Prefix != "/systems/a/" || c.LeaseTTL != 4*time.Second ||
		c.DialTimeout != 2*time.Second || c.MaxWorkers != 50 || c.Labels["zone"] != "a" || c.Labels["rack.id"] != "r-1" || len(c.Labels) != 2 ||
		c.Username != "dynworkers" || c.Password != clusterPassword || c.PasswordFile != filepath.Join(dir, "etcd.pw") ||
		c.SecretsKeyFile != filepath.Join(dir, "cluster.key") {
		t.Fatalf("cluster = %+v", c.Redacted())
	}
	want := AMQPTLS{CAFile: filepath.Join(dir, "etcd-ca.pem"), CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem"), ServerName: "etcd.internal"}
	if c.TLS == nil || *c.TLS != want {
		t.Fatalf("tls = %+v, want %+v", c.TLS, want)
	}
	tc, err := c.ClientTLS()
	if err != nil || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "etcd.internal" || tc.InsecureSkipVerify || tc.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientTLS = %+v, %v", tc, err)
	}

	// The password never prints.
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%+v", c), string(js)} {
		if strings.Contains(s, secretMarker) {
			t.Errorf("printed config holds the password: %s", s)
		}
		if !strings.Contains(s, "dynworkers") {
			t.Errorf("printed config lacks the user: %s", s)
		}
	}
	if c.Redacted().Password != RedactedValue || c.Password != clusterPassword {
		t.Errorf("Redacted changed the config or did not redact")
	}

	// An https endpoint without a tls block: TLS with the system's roots.
	cfg, diags = loadCluster(t, dir, "cluster {\n  endpoints = [\"https://etcd-1:2379\"]\n}\n")
	if cfg == nil {
		t.Fatal(diags)
	}
	if tc, err := cfg.Cluster.ClientTLS(); err != nil || tc == nil || tc.RootCAs != nil || tc.InsecureSkipVerify {
		t.Errorf("ClientTLS for https without tls = %+v, %v", tc, err)
	}

	// A key file that becomes readable after the load: ClientTLS names it.
	cfg, diags = loadCluster(t, dir, "cluster {\n  endpoints = [\"etcd-1:2379\"]\n  tls {\n    cert_file = \"client.pem\"\n    key_file = \"client-key.pem\"\n  }\n}\n")
	if cfg == nil {
		t.Fatal(diags)
	}
	if err := os.Chmod(filepath.Join(dir, "client-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Cluster.ClientTLS(); err == nil || !strings.Contains(err.Error(), "cluster tls key_file") {
		t.Errorf("ClientTLS with a readable key = %v", err)
	}
}

// Every bad value is an error on its attribute, with file:line, naming it.
func TestClusterErrors(t *testing.T) {
	dir := clusterDir(t)
	writeFile(t, filepath.Join(dir, "open.pw"), "pw\n") // 0644
	writePrivate(t, filepath.Join(dir, "empty.pw"), "\n")
	writePrivate(t, filepath.Join(dir, "two.pw"), "a\nb\n")
	writeFile(t, filepath.Join(dir, "open.key"), strings.Repeat("ab", 32))
	writePrivate(t, filepath.Join(dir, "short.key"), "abc")
	writeFile(t, filepath.Join(dir, "readable-key.pem"), "x")
	tests := []struct {
		attr string // the line 3 of the block
		want string
	}{
		{`endpoints = []`, `"endpoints" must list at least one`},
		{`endpoints = "127.0.0.1:2379"`, `"endpoints"`},
		{`endpoints = ["127.0.0.1"]`, `Element 0 of endpoints, "127.0.0.1", is not host:port`},
		{`endpoints = ["a:1", "a:1"]`, `Element 1 of endpoints, "a:1", is listed twice`},
		{`endpoints = ["a:0"]`, `no valid port`},
		{`endpoints = ["a:99999"]`, `no valid port`},
		{`endpoints = ["grpc://a:1"]`, `must be host:port or start with "http://" or "https://"`},
		{`endpoints = ["http://u:p@a:1"]`, `must not hold a user name or password`},
		{`endpoints = ["http://a:1/v3"]`, `without a path`},
		{`endpoints = ["http://a"]`, `is not host:port`},
		{`endpoints = [""]`, `is empty`},
		{`endpoints = ["a :1"]`, `white space`},
		{`endpoints = ["http://a:1", "https://b:1"]`, `mix http:// and https://`},
		{`prefix = "dynworkers/"`, `"prefix" must start and end with "/"`},
		{`prefix = "/dynworkers"`, `"prefix" must start and end with "/"`},
		{`prefix = "/a b/"`, `"prefix" must not contain white space`},
		{`prefix = "/"`, `must start and end`},
		{`prefix = "/a//b/"`, `empty segment`},
		{`lease_ttl = "1s"`, `"lease_ttl" must be from 2s to 5m`},
		{`lease_ttl = "6m"`, `"lease_ttl" must be from 2s to 5m`},
		{`lease_ttl = "2500ms"`, `"lease_ttl" must be a whole number of seconds`},
		{`lease_ttl = "soon"`, `"soon" is not a duration`},
		{`lease_ttl = "-3s"`, `"lease_ttl" must be a duration greater than zero`},
		{`dial_timeout = "0s"`, `"dial_timeout" must be a duration greater than zero`},
		{`dial_timeout = "2m"`, `"dial_timeout" must be at most 1m`},
		{`max_workers = -1`, `"max_workers" must be a whole number`},
		{`max_workers = 1.5`, `"max_workers" must be a whole number`},
		{`max_workers = "many"`, `"max_workers"`},
		{`labels = { "" = "a" }`, `a label key must not be empty`},
		{`labels = { "a b" = "a" }`, `The label "a b": a label key may hold only`},
		{`labels = { zone = "" }`, `The value of label "zone": a label value must not be empty`},
		{`labels = { zone = "a\nb" }`, `control characters`},
		{`labels = ["a"]`, `"labels"`},
		{`username = "u"`, `username without password_file`},
		{`password_file = "etcd.pw"`, `password_file without username`},
		{"username = \"\"\n  password_file = \"etcd.pw\"", `"username" must be an etcd user name`},
		{"username = \"u\"\n  password_file = \"open.pw\"", `is accessible to its group or to others (mode 0644)`},
		{"username = \"u\"\n  password_file = \"missing.pw\"", `Cannot read the password file`},
		{"username = \"u\"\n  password_file = \"empty.pw\"", `is empty`},
		{"username = \"u\"\n  password_file = \"two.pw\"", `on one line`},
		{"username = \"u\"\n  password_file = \"\"", `"password_file" must not be empty`},
		{`secrets_key_file = "open.key"`, `secrets key file`},
		{`secrets_key_file = "missing.key"`, `Cannot read the secrets key file`},
		{`secrets_key_file = "short.key"`, `32-byte key`},
		{`secrets_key_file = ""`, `"secrets_key_file" must not be empty`},
		{`lease_tll = "5s"`, `Did you mean "lease_ttl"?`},
		{"tls {\n    ca_fil = \"x\"\n  }", `Did you mean "ca_file"?`},
		{`max_worker = 3`, `Did you mean "max_workers"?`},
		{"tls {\n    insecure_skip_verify = true\n  }", `insecure_skip_verify is not supported`},
		{"tls {\n    ca_file = \"missing.pem\"\n  }", `cannot read the CA file`},
		{"tls {\n    cert_file = \"client.pem\"\n  }", `cert_file is set without key_file`},
		{"tls {\n    ca_file = \"\"\n  }", `"ca_file" must not be empty`},
		{"tls {\n    server_name = \"\"\n  }", `"server_name" must not be empty`},
		{"tls {\n    cert_file = \"client.pem\"\n    key_file = \"readable-key.pem\"\n  }", `is accessible to its group or to others (mode 0644)`},
		{"tls {\n  }\n  tls {\n  }", `Only one "tls" block is allowed in the cluster block`},
	}
	for _, tt := range tests {
		t.Run(tt.attr, func(t *testing.T) {
			// system_id on line 1, the block on line 2, endpoints on line
			// 3 (unless the case sets them), the case from line 4.
			body, line := "  endpoints = [\"127.0.0.1:2379\"]\n  "+tt.attr, 4
			if strings.HasPrefix(tt.attr, "endpoints ") {
				body, line = "  "+tt.attr, 3
			}
			switch {
			case strings.HasPrefix(tt.attr, "tls {\n  }\n  tls"):
				line = 6
			case strings.HasPrefix(tt.attr, "tls") && strings.Count(tt.attr, "\n") == 3:
				line = 6 // the second attribute of the tls block
			case strings.HasPrefix(tt.attr, "tls"), strings.Contains(tt.attr, "\n  password_file"):
				line = 5
			}
			if strings.HasPrefix(tt.attr, "username = \"\"") {
				line = 4
			}
			cfg, diags := loadCluster(t, dir, "system_id = \"s\"\ncluster {\n"+body+"\n}\n")
			if cfg != nil {
				t.Fatalf("loaded: %+v", cfg.Cluster.Redacted())
			}
			wantAt := fmt.Sprintf("c.hcl:%d:", line)
			if !strings.Contains(strings.ToLower(diags), strings.ToLower(tt.want)) || !strings.Contains(diags, wantAt) {
				t.Errorf("diagnostics:\n%s\nwant one at %s saying %q", diags, wantAt, tt.want)
			}
			if strings.Contains(diags, secretMarker) {
				t.Errorf("diagnostics leak the password:\n%s", diags)
			}
		})
	}
}

func TestClusterBlockRules(t *testing.T) {
	dir := t.TempDir()
	_, diags := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n}\n\ncluster {\n  endpoints = [\"b:1\"]\n}\n")
	if !strings.Contains(diags, "c.hcl:5:1: Duplicate cluster block: Only one \"cluster\" block is allowed; the first is at ") ||
		!strings.Contains(diags, "c.hcl:1:1.") {
		t.Errorf("duplicate block: %s", diags)
	}
	_, diags = loadCluster(t, dir, "cluster {\n  lease_ttl = \"5s\"\n}\n")
	if !strings.Contains(diags, "c.hcl:1:1: Missing required argument: The cluster block needs endpoints") {
		t.Errorf("missing endpoints: %s", diags)
	}
	_, diags = loadCluster(t, dir, "cluster \"x\" {\n  endpoints = [\"a:1\"]\n}\n")
	if !strings.Contains(diags, "c.hcl:1:") || !strings.Contains(diags, "label") {
		t.Errorf("labelled block: %s", diags)
	}
	_, diags = loadCluster(t, dir, "cluster {\n  endpoints = [\"http://a:1\"]\n  tls {\n  }\n}\n")
	if !strings.Contains(diags, "c.hcl:3:3: TLS needs https:// endpoints") {
		t.Errorf("tls with http: %s", diags)
	}
	// Across the files of a directory.
	cd := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(cd, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cd, "a.hcl"), "cluster {\n  endpoints = [\"a:1\"]\n}\n")
	writeFile(t, filepath.Join(cd, "b.hcl"), "\ncluster {\n  endpoints = [\"a:1\"]\n}\n")
	_, d := Load(cd, testClasses())
	if !d.HasErrors() || !strings.Contains(d.Error(), "b.hcl:2,1-8: Duplicate cluster block") || !strings.Contains(d.Error(), "a.hcl:1:1") {
		t.Errorf("duplicate across files: %v", d)
	}
}

// A secret file's mode is checked for the password and the key alike; 0400
// is fine.
func TestClusterSecretFileModes(t *testing.T) {
	dir := clusterDir(t)
	for _, mode := range []os.FileMode{0o400, 0o600} {
		for _, f := range []string{"etcd.pw", "cluster.key"} {
			if err := os.Chmod(filepath.Join(dir, f), mode); err != nil {
				t.Fatal(err)
			}
		}
		cfg, diags := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  username = \"u\"\n  password_file = \"etcd.pw\"\n  secrets_key_file = \"cluster.key\"\n}\n")
		if cfg == nil || cfg.Cluster.Password != clusterPassword {
			t.Errorf("mode %04o: %s", mode, diags)
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		for _, f := range []string{"etcd.pw", "cluster.key"} {
			if err := os.Chmod(filepath.Join(dir, f), mode); err != nil {
				t.Fatal(err)
			}
		}
		_, diags := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  username = \"u\"\n  password_file = \"etcd.pw\"\n  secrets_key_file = \"cluster.key\"\n}\n")
		want := fmt.Sprintf("(mode %04o)", mode)
		if strings.Count(diags, want) != 2 || !strings.Contains(diags, "c.hcl:4:") || !strings.Contains(diags, "c.hcl:5:") {
			t.Errorf("mode %04o: %s", mode, diags)
		}
	}
	if _, diags := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  username = \"u\"\n  password_file = \".\"\n}\n"); !strings.Contains(diags, "is not a regular file") {
		t.Errorf("directory as password file: %s", diags)
	}
}

func TestValidateHostName(t *testing.T) {
	for _, ok := range []string{"host-a", "h.example.com", "h_1"} {
		if err := ValidateHostName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "all", "any", "a b", "a/b", "a*", "a#", strings.Repeat("h", 201), "a\x00"} {
		if err := ValidateHostName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var _ hcl.Range
}

// A cluster host's name must not end in ".any" or ".all": its own routing
// key would read as a system-wide one.
func TestClusterHostNameSuffix(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"edge.any", "rack-1.all"} {
		_, diags := loadCluster(t, dir, "host {\n  name = \""+name+"\"\n}\ncluster {\n  endpoints = [\"a:1\"]\n}\n")
		if !strings.Contains(diags, "c.hcl:4:1: Invalid host name for a cluster") || !strings.Contains(diags, name) {
			t.Errorf("%s: %s", name, diags)
		}
		// Without a cluster block, such a name is fine, as before.
		if cfg, diags := loadCluster(t, dir, "host {\n  name = \""+name+"\"\n}\n"); cfg == nil {
			t.Errorf("%s without a cluster block: %s", name, diags)
		}
	}
}

func TestClusterSameSettings(t *testing.T) {
	dir := t.TempDir()
	a, d1 := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  labels = { zone = \"a\" }\n}\n")
	b, d2 := loadCluster(t, dir, "\n\ncluster {\n  endpoints = [\"a:1\"]\n  labels = { zone = \"a\" }\n}\n")
	c, d3 := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  labels = { zone = \"b\" }\n}\n")
	if a == nil || b == nil || c == nil {
		t.Fatal(d1, d2, d3)
	}
	var none *ClusterConfig
	if !a.Cluster.SameSettings(b.Cluster) || a.Cluster.SameSettings(c.Cluster) || a.Cluster.SameSettings(none) || !none.SameSettings(nil) {
		t.Errorf("SameSettings: moved block %v, changed label %v, nil %v, nil nil %v",
			a.Cluster.SameSettings(b.Cluster), a.Cluster.SameSettings(c.Cluster), a.Cluster.SameSettings(none), none.SameSettings(nil))
	}
}

func TestClusterPasswordFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	writePrivate(t, filepath.Join(dir, "big.pw"), strings.Repeat("p", 5000))
	_, diags := loadCluster(t, dir, "cluster {\n  endpoints = [\"a:1\"]\n  username = \"u\"\n  password_file = \"big.pw\"\n}\n")
	if !strings.Contains(diags, "c.hcl:4:") || !strings.Contains(diags, "larger than 4096 bytes") || strings.Contains(diags, "ppppp") {
		t.Errorf("big password file: %s", diags)
	}
}
