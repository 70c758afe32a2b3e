package daemon

import (
	"context"
	"errors"
	"reflect"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// Reload re-reads the HCL configuration and rescans the plugin directory,
// before taking any lock, then has the tree apply the difference (see
// tree.Tree.Reload): what was added starts, what was removed stops, what
// changed (by spec hash, or moved to another supervisor) restarts, the
// rest is left alone, same process; HCL workers and supervisors stopped by
// a control message start again; supervisors whose settings changed are
// reconfigured in place. Control-started workers are not touched, and a
// reload that would remove or take the name of one is refused. A
// configuration with errors changes nothing: the error carries every
// diagnostic.
func (d *Daemon) Reload(ctx context.Context) (api.ReloadResult, error) {
	file, diags := config.Parse(d.opts.ConfigPath)
	if file == nil {
		return api.ReloadResult{}, control.InvalidConfiguration(diags)
	}
	// The lock file and the plugins' environment are the running host's:
	// host settings apply from the next start (ignoredChanges), and the
	// watch's rescans use the running ones too.
	scanHost := file.Host
	scanHost.PluginLock, scanHost.PluginEnv = d.cfg.Host.PluginLock, d.cfg.Host.PluginEnv
	cat, err := ScanCatalog(ctx, scanHost, d.logger, d.exec)
	if err != nil {
		return api.ReloadResult{}, &control.Error{Code: control.CodeInvalidConfig, Message: "reload: " + err.Error()}
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return api.ReloadResult{}, control.InvalidConfiguration(diags)
	}
	// The new catalog is installed once the plan is accepted, before
	// anything starts, so that new starts use the rescanned binaries.
	res, err := d.tree.Reload(ctx, cfg.Root, func() { d.setCatalog(cat) })
	res.Ignored = ignoredChanges(d.cfg, cfg)
	if err != nil {
		var cerr *control.Error
		if errors.As(err, &cerr) {
			return api.ReloadResult{}, err // refused: nothing changed
		}
		return res, err
	}
	return res, nil
}

// ignoredChanges lists the host-level settings that differ between a and b;
// they apply at the next start of the host.
func ignoredChanges(a, b *config.Config) []string {
	var out []string
	if a.SystemID != b.SystemID {
		out = append(out, "system_id")
	}
	if !reflect.DeepEqual(a.Host, b.Host) { // HostConfig holds slices and maps (http_allowed_hosts, plugin_env)
		out = append(out, "host")
	}
	if (a.AMQP == nil) != (b.AMQP == nil) || (a.AMQP != nil && (a.AMQP.URL != b.AMQP.URL || !sameTLS(a.AMQP.TLS, b.AMQP.TLS))) {
		out = append(out, "amqp")
	}
	if !a.Cluster.SameSettings(b.Cluster) {
		out = append(out, "cluster")
	}
	return out
}

// sameTLS reports whether two amqp tls blocks are the same settings.
func sameTLS(a, b *config.AMQPTLS) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
