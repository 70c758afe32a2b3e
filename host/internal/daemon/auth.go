package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// newPolicy makes the control policy of cfg's control block; nil without
// one.
func newPolicy(cfg *config.Config) (*auth.Policy, error) {
	if cfg.Control == nil {
		return nil, nil
	}
	o := cfg.Control.PolicyOptions()
	if cfg.Host.StateDir != "" {
		// Nonces survive a restart, so that a request accepted just before
		// it cannot be replayed just after it.
		if err := os.MkdirAll(cfg.Host.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating state_dir: %w", err)
		}
		o.NonceFile = filepath.Join(cfg.Host.StateDir, NonceFile)
	}
	p, err := auth.NewPolicy(o)
	if err != nil {
		return nil, fmt.Errorf("control block: %w", err)
	}
	return p, nil
}

// NonceFile is the file in state_dir that keeps the nonces of accepted
// signed control requests across restarts.
const NonceFile = "control-nonces"

// closePolicy closes the policy's nonce file.
func (d *Daemon) closePolicy() {
	if d.policy != nil {
		if err := d.policy.Close(); err != nil {
			d.logger.Warn("closing the control nonce file", "error", err)
		}
	}
}

// setPolicy gives the dispatcher the control policy, and says once, at
// start, how control requests are checked: loudly when they are not.
func (d *Daemon) setPolicy() {
	if d.policy == nil {
		d.logger.Warn("NO CONTROL POLICY: any client that can publish to the vumi.control exchange, or reach the HTTP API, " +
			"can start any worker class with any config on this host; add a control { require = true ... } block " +
			"(see docs/operator-guide.md, \"Authenticated control\")")
		return
	}
	d.tr.dispatcher.SetPolicy(d.policy)
	names := make([]string, len(d.cfg.Control.Principals))
	for i, p := range d.cfg.Control.Principals {
		names[i] = p.Name
	}
	if !d.policy.Required() {
		d.logger.Warn("control policy in audit mode (control.require = false): requests it would refuse are logged and still carried out",
			"principals", strings.Join(names, ","))
		return
	}
	d.logger.Info("control policy enforced: control requests must be authenticated and authorised",
		"principals", strings.Join(names, ","), "replay_window", d.policy.Window().String())
}

// The daemon is the dispatcher's Locator: the policy authorises a request
// by the supervisor it acts in and the class it acts on.
var _ control.Locator = (*Daemon)(nil)

// WorkerPlace returns the supervisor path and class of a worker.
func (d *Daemon) WorkerPlace(name string) (string, string, bool) {
	w, ok := d.tree.Worker(name)
	if !ok {
		return "", "", false
	}
	return w.Supervisor, w.Class, true
}

// SupervisorPath returns the full path of the supervisor a request names
// as the tree finds it: by its path, its path without the root, or its
// name alone.
func (d *Daemon) SupervisorPath(path string) (string, bool) {
	p := strings.Trim(path, "/")
	if p == "" || p == config.RootName {
		return config.RootName, true
	}
	for _, s := range d.tree.Supervisors() {
		if s.Path == p || s.Path == config.RootName+"/"+p || (!strings.Contains(p, "/") && s.Name == p) {
			return s.Path, true
		}
	}
	return "", false
}

// CanonicalClass returns the canonical name of a class or alias.
func (d *Daemon) CanonicalClass(name string) (string, bool) {
	c, _, err := d.Catalog().ResolveClass(name)
	if err != nil {
		return "", false
	}
	return c, true
}
