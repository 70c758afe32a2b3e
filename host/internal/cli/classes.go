package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/daemon"
)

func runClasses(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("classes", "[-config PATH | -plugin-dir DIR] [-json]", stderr)
	configPath := fs.String("config", DefaultConfig, "HCL config whose host.plugin_dir and host.state_dir to use")
	pluginDir := fs.String("plugin-dir", "", "plugin directory to scan (overrides -config)")
	asJSON := fs.Bool("json", false, "print JSON")
	if rc := parseFlags(fs, args, 0); rc >= 0 {
		return rc
	}
	var host config.HostConfig
	if *pluginDir != "" {
		host.PluginDir = *pluginDir
	} else {
		file, diags := config.Parse(*configPath)
		if diags.HasErrors() {
			config.FormatDiagnostics(stderr, diags, nil)
			return 1
		}
		host = file.Host
	}
	cat, err := daemon.ScanCatalog(context.Background(), host, newLogger(stderr, "off", false), nil)
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers classes: %v\n", err)
		return 1
	}
	if *asJSON {
		return printClassesJSON(stdout, stderr, cat)
	}
	printClasses(stdout, cat)
	return 0
}

func printClassesJSON(stdout, stderr io.Writer, cat *catalog.Catalog) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cat.List()); err != nil {
		fmt.Fprintf(stderr, "dynworkers classes: %v\n", err)
		return 1
	}
	return 0
}

func printClasses(w io.Writer, cat *catalog.Catalog) {
	classes := cat.Classes()
	if len(classes) == 0 {
		fmt.Fprintln(w, "no classes found")
	}
	for i, c := range classes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s", c.Name)
		if c.Version != "" {
			fmt.Fprintf(w, " %s", c.Version)
		}
		fmt.Fprintf(w, "  (%s)\n", c.Binary.Path)
		if c.Description != "" {
			fmt.Fprintf(w, "  %s\n", c.Description)
		}
		if len(c.Aliases) > 0 {
			fmt.Fprintf(w, "  aliases: %s\n", strings.Join(c.Aliases, ", "))
		}
		if len(c.Schema) == 0 {
			fmt.Fprintln(w, "  config: none")
			continue
		}
		fmt.Fprintln(w, "  config:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, a := range c.Schema {
			var notes []string
			if a.Required {
				notes = append(notes, "required")
			}
			if a.Default != nil {
				b, _ := json.Marshal(a.Default)
				notes = append(notes, "default "+string(b))
			}
			if a.Sensitive {
				notes = append(notes, "sensitive")
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", a.Name, a.Type, strings.Join(notes, ", "), a.Description)
		}
		tw.Flush()
	}
	if probs := cat.Problems(); len(probs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "broken:")
		for _, p := range probs {
			fmt.Fprintf(w, "  %s: %v\n", p.Path, p.Err)
		}
	}
}
