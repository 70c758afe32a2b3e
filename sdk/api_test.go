package sdk

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/internal/wire"
)

// forbiddenInAPI are what package sdk must not show plugin authors: the
// protocol between host and plugin (module-internal internal/wire), the
// SDK's own plumbing, and the types of the libraries it is built on.
var forbiddenInAPI = []string{
	// identifiers
	`\bHandshake\b`, `\bVersionedPlugins\b`, `\bGRPCWorkerPlugin\b`, `\bPluginName\b`,
	`\bEnvParentPID\b`, `\bEnvLogLevel\b`, `\bCheckMetric\b`, `\bValidAggregator\b`,
	`\bReservedPrefixes\b`, `\bNewConsumeConfig\b`, `\bConsumeConfig\b`, `\bMustJSON\b`,
	`\bNewWorker\b`, `\bBrokerUser\b`, `\bGRPCBroker\b`,
	// packages
	`\bhclog\.`, `\bgrpc\.`, `\bcodes\.`, `\bstatus\.`, `\bplugin\.`, `\bproto\.`, `\bwire\.`, `\benvhook\b`,
	`go-hclog`, `hashicorp/go-plugin`, `google\.golang\.org`, `internal/`,
}

// The must-hold of issue 14: `go doc github.com/dynworkers/dynworkers/sdk`
// (all of it) lists no protocol internals and no type of grpc, hclog or
// go-plugin.
func TestGoDocListsNoInternals(t *testing.T) {
	out, err := exec.Command(goTool(), "doc", "-all", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go doc -all: %v\n%s", err, out)
	}
	doc := string(out)
	if !strings.Contains(doc, "func Run(fn func(ctx context.Context, env *Env) error) Worker") ||
		!strings.Contains(doc, "type Env struct {") {
		t.Fatalf("go doc output lacks the API it should show:\n%s", doc)
	}
	for _, f := range forbiddenInAPI {
		re := regexp.MustCompile(f)
		for _, line := range strings.Split(doc, "\n") {
			if re.MatchString(line) {
				t.Errorf("go doc shows %s: %q", f, strings.TrimSpace(line))
			}
		}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// The constants sdk spells out are the wire's.
func TestConstantsMatchTheWire(t *testing.T) {
	if MaxNameLen != wire.MaxNameLen || AggSum != wire.AggSum || AggAvg != wire.AggAvg ||
		AggMin != wire.AggMin || AggMax != wire.AggMax || AggLast != wire.AggLast {
		t.Error("sdk's constants differ from internal/wire's")
	}
	for _, a := range []string{AggSum, AggAvg, AggMin, AggMax, AggLast} {
		if !wire.ValidAggregator(a) {
			t.Errorf("aggregator %q is not the wire's", a)
		}
	}
	if ErrInvalidMetric != wire.ErrInvalidMetric {
		t.Error("ErrInvalidMetric is not the wire's")
	}
}
