package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// Warm spares are listed after the tree, per binary with their pids, and
// kept in -json; a status without spares has no such line. (Checked apart
// from the golden files.)
func TestStatusShowsSpares(t *testing.T) {
	fixClock(t)
	rep := api.Status{SystemID: "dev", Host: "h1", Workers: []api.Worker{{Name: "w", Supervisor: "root", Class: "chaos", State: "running", Pid: 10}},
		Spares: []api.SparePool{{Binary: "/srv/plugins/chaos", Ready: 1, Pids: []int{6001}}, {Binary: "/srv/plugins/smpp", Ready: 2, Pids: []int{6002, 6003}}}}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printResult(&b, raw, false, false)
	if want := "\nwarm spares: chaos 1 (pid 6001) · smpp 2 (pids 6002 6003)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status output lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printResult(&b, raw, true, false)
	if want := `"pids": [`; !strings.Contains(b.String(), `"spares"`) || !strings.Contains(b.String(), want) {
		t.Errorf("status -json output lacks the spares:\n%s", b.String())
	}
	rep.Spares = nil
	raw, _ = json.Marshal(rep)
	b.Reset()
	printResult(&b, raw, false, false)
	if strings.Contains(b.String(), "spares") {
		t.Errorf("status without spares mentions them:\n%s", b.String())
	}
}
