package cli

import (
	"context"
	"fmt"
	"io"

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
	cat, err := daemon.ScanCatalog(context.Background(), file.Host, logger)
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
	fmt.Fprintf(stdout, "%s: ok (%d workers in %d supervisors, %d classes available)\n", path, workers, sups, len(cat.Classes()))
	return 0
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
