package clustere2e

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/sdk"
)

type noClasses struct{}

func (noClasses) ResolveClass(name string) (string, sdk.Schema, error) {
	return "", sdk.Schema{}, fmt.Errorf("unknown class %q", name)
}

// The three host configs of docs/cluster.md's walkthrough load, and make
// one system: one system_id and etcd, three names, three HTTP addresses
// and state directories.
func TestClusterExamplesLoad(t *testing.T) {
	names, addrs, states := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := 1; i <= 3; i++ {
		path := filepath.Join("..", "..", "..", "examples", "cluster", fmt.Sprintf("host-%d.hcl", i))
		cfg, diags := config.Load(path, noClasses{})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", path, diags)
		}
		if cfg.SystemID != "demo" || cfg.Cluster == nil || len(cfg.Cluster.Endpoints) != 1 || cfg.Cluster.Endpoints[0] != "http://127.0.0.1:2379" {
			t.Errorf("%s: system_id %q, cluster %+v", path, cfg.SystemID, cfg.Cluster)
		}
		names[cfg.Host.Name], addrs[cfg.Host.HTTPAddr], states[cfg.Host.StateDir] = true, true, true
	}
	if len(names) != 3 || len(addrs) != 3 || len(states) != 3 {
		t.Errorf("the examples share a name, an address or a state_dir: %v %v %v", names, addrs, states)
	}
}
