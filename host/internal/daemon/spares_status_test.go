package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// Warm spares show in status: once a worker was killed, its binary's spare
// is listed with its pid, which is no worker's, under "spares" in the JSON.
func TestStatusShowsWarmSpares(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = \"test-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  warm_spares = 1\n}\n%s\n", `
worker "w" {
  class = "chaos"
}
`)
	h := startConfig(t, dir, src)
	pid := h.waitStarted("w")
	ctx := context.Background()
	st, err := h.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Spares) != 0 {
		t.Errorf("spares before any failure: %+v, want none", st.Spares)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var pools []api.SparePool
	sdktest.Eventually(t, waitTimeout, func() bool {
		st, err = h.d.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pools = st.Spares
		return len(pools) == 1 && pools[0].Ready == 1
	}, "status spares = %v, want one ready spare of chaos", later(func() any { return pools }))
	sp := pools[0]
	if want := filepath.Join(dir, "plugins", "chaos"); sp.Binary != want {
		t.Errorf("spare binary %q, want %q", sp.Binary, want)
	}
	if len(sp.Pids) != 1 || !testplugins.Alive(sp.Pids[0]) {
		t.Fatalf("spare pids %v, want one live process", sp.Pids)
	}
	for _, w := range st.Workers {
		if w.Pid == sp.Pids[0] {
			t.Errorf("the spare's pid %d is worker %s's", w.Pid, w.Name)
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"spares":[{"binary":%q,"ready":1,"pids":[%d]}]`, sp.Binary, sp.Pids[0]); !strings.Contains(string(raw), want) {
		t.Errorf("status JSON lacks %s:\n%s", want, raw)
	}
}
