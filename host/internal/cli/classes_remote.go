package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// runClassesCmd is the classes command: with -remote it asks a running
// host (list_classes), otherwise it scans the plugin directory locally
// (runClasses).
func runClassesCmd(args []string, stdout, stderr io.Writer) int {
	remote, help := false, false
	for _, a := range args {
		switch a {
		case "-remote", "--remote", "-remote=true", "--remote=true":
			remote = true
		case "-h", "-help", "--help", "--h":
			help = true
		}
	}
	if remote {
		return runClassesRemote(args, stdout, stderr)
	}
	rc := runClasses(args, stdout, stderr)
	if help {
		fmt.Fprintln(stderr, "  -remote\n    \task the running host instead (list_classes); see `dynworkers classes -remote -h`")
	}
	return rc
}

func runClassesRemote(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("classes", "-remote [-json] "+clientFlagsUsage, stderr)
	fs.Bool("remote", false, "ask the running host (list_classes) instead of scanning the plugin directory")
	asJSON := fs.Bool("json", false, "print the list_classes result as JSON")
	co := addClientFlags(fs)
	if _, rc := parseArgs(fs, args, "", 0, 0); rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "classes", "%s", msg)
	}
	message, _ := json.Marshal(control.Request{Operation: control.OpListClasses})
	answers, rc := co.do(call{method: http.MethodGet, path: "/v1/classes", message: message}, stderr)
	if rc != exitOK {
		return rc
	}
	return co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
		if prefix != "" {
			fmt.Fprintf(w, "%s\n", strings.TrimSpace(prefix))
		}
		var list api.ClassList
		if *asJSON || json.Unmarshal(a.reply.Result, &list) != nil {
			printJSON(w, a.reply.Result)
			return
		}
		printRemoteClasses(w, &list)
	}, nil)
}

// printRemoteClasses prints a list_classes result the way the local
// classes command prints a scan.
func printRemoteClasses(w io.Writer, list *api.ClassList) {
	if len(list.Classes) == 0 {
		fmt.Fprintln(w, "no classes found")
	}
	for i, c := range list.Classes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprint(w, c.Name)
		if c.Version != "" {
			fmt.Fprintf(w, " %s", c.Version)
		}
		if c.Binary != "" {
			fmt.Fprintf(w, "  (%s)", c.Binary)
		}
		fmt.Fprintln(w)
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
		rows := make([][]string, 0, len(c.Schema))
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
			rows = append(rows, []string{"    " + a.Name, a.Type, strings.Join(notes, ", "), a.Description})
		}
		writeTable(w, rows, func(_, _ int, cell string) string { return cell })
	}
	if len(list.Broken) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "broken:")
		for _, p := range list.Broken {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Error)
		}
	}
}

// writeTable prints rows in columns two spaces apart, padded by the width
// of their text; decorate may wrap a padded cell (in colour codes, which
// must not count in widths).
func writeTable(w io.Writer, rows [][]string, decorate func(row, col int, cell string) string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			}
			b.WriteString(decorate(ri, i, cell))
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
