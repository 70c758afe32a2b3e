package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/daemon"
)

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "[PATH]", stderr)
	if rc := parseFlags(fs, args, 1); rc >= 0 {
		return rc
	}
	path := DefaultConfig
	if fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	// Parse keeps going after errors and Decode checks what it can, so
	// every diagnostic is reported at once.
	file, diags := config.Parse(path)
	if file == nil {
		config.FormatDiagnostics(stderr, diags, nil)
		return 1
	}
	logger := newLogger(stderr, "warn", false)
	cat, err := daemon.ScanCatalog(context.Background(), file.Host, logger, nil)
	if err != nil {
		config.FormatDiagnostics(stderr, diags, file.Sources())
		fmt.Fprintf(stderr, "dynworkers validate: %v\n", err)
		return 1
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if cfg != nil {
		// What this machine cannot enforce of the workers' limits.
		diags = append(diags, config.LimitWarnings(cfg, contain.Probe())...)
	}
	if len(diags) > 0 {
		config.FormatDiagnostics(stderr, diags, file.Sources())
	}
	if diags.HasErrors() || cfg == nil {
		return 1
	}
	workers, sups := count(cfg.Root)
	fmt.Fprintf(stdout, "%s: ok (%s in %s, %s available)\n", path,
		plural(workers, "worker", "workers"), plural(sups, "supervisor", "supervisors"), plural(len(cat.Classes()), "class", "classes"))
	if cfg.Cluster != nil {
		fmt.Fprintln(stdout, clusterSummary(cfg.Cluster))
	}
	return 0
}

// clusterSummary describes a cluster block in one line for validate:
// never the password (nor the path of its file, nor any key), which
// validate's output, often pasted into tickets, must not hold.
func clusterSummary(c *config.ClusterConfig) string {
	capacity := "no limit"
	if c.MaxWorkers > 0 {
		capacity = strconv.Itoa(c.MaxWorkers)
	}
	s := fmt.Sprintf("cluster: %d etcd endpoints (%s), prefix %s, lease_ttl %s, max_workers %s, labels %s",
		len(c.Endpoints), strings.Join(redactEndpoints(c.Endpoints), ", "), c.Prefix, c.LeaseTTL, capacity, labelsText(c.Labels))
	switch {
	case c.Username != "":
		s += ", etcd auth as " + c.Username
	default:
		s += ", no etcd auth"
	}
	if c.TLS != nil {
		s += ", TLS"
	}
	if c.SecretsKeyFile != "" {
		s += ", secrets sealed"
	}
	return s
}

func count(s *config.Supervisor) (workers, sups int) {
	sups = 1
	for _, n := range s.Children {
		if n.Worker != nil {
			workers++
		} else {
			w, ss := count(n.Supervisor)
			workers += w
			sups += ss
		}
	}
	return workers, sups
}

// redactEndpoints hides the password of an endpoint URL that carries one
// (http://user:pass@host:2379).
func redactEndpoints(eps []string) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e
		if u, err := url.Parse(e); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
				out[i] = u.String()
			}
		}
	}
	return out
}

// plural is "1 worker", "2 workers", "0 workers".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
