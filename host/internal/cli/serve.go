package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/daemon"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "[-config PATH]", stderr)
	configPath := fs.String("config", DefaultConfig, "HCL config file or directory of *.hcl files")
	logLevel := fs.String("log-level", "", "trace, debug, info, warn or error (default: the config's log_level, else info)")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	if rc := parseFlags(fs, args, 0); rc >= 0 {
		return rc
	}
	logger := newLogger(stderr, *logLevel, *logJSON)

	// The first SIGINT/SIGTERM stops the workers gracefully; a second one
	// exits at once, and the plugin processes die with the host (their
	// parent-death signal).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		sig := <-sigs
		logger.Info("signal received: stopping workers (send it again to exit at once)", "signal", sig.String())
		cancel()
		sig = <-sigs
		logger.Warn("second signal received: exiting now, plugin processes die with the host", "signal", sig.String())
		os.Exit(1)
	}()

	d, err := daemon.Load(ctx, daemon.Options{ConfigPath: *configPath, Logger: logger, KeepLogLevel: *logLevel != "", Version: Version})
	if err != nil {
		var ce *daemon.ConfigError
		if errors.As(err, &ce) {
			config.FormatDiagnostics(stderr, ce.Diags, nil)
			fmt.Fprintf(stderr, "dynworkers serve: %s has errors; nothing was started\n", *configPath)
			return 1
		}
		fmt.Fprintf(stderr, "dynworkers serve: %v\n", err)
		return 1
	}
	// SIGHUP reloads the configuration, as the reload operation does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP received: reloading the configuration")
				if _, err := d.Reload(ctx); err != nil {
					var ce *control.Error
					if errors.As(err, &ce) {
						logger.Error("reload refused; nothing was changed", "error", ce.Message)
						for _, det := range ce.Details {
							logger.Error("  "+det.Summary, "detail", det.Detail)
						}
						continue
					}
					logger.Error("reload", "error", err)
				}
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		if se := (*daemon.StartupError)(nil); errors.As(err, &se) {
			logger.Error("host failed to start", "error", se.Err)
			return 1
		}
		logger.Error("shutdown was not clean", "error", err)
		return 1
	}
	return 0
}
