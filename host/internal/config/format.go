package config

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostics writes diags as plain text (never coloured), one block
// per diagnostic:
//
//	workers.hcl:12:7: error: Unsupported argument
//	  An argument named "prot" is not expected here. Did you mean "port"?
//	     12 |       prot = 1
//	        |       ^^^^
//
// Sources come from files (File.Sources), or are read from disk when files
// is nil or lacks a file; without a source, or for a diagnostic about a
// sensitive value, the source line is left out.
func FormatDiagnostics(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) {
	src := sources{files: files, read: map[string][]byte{}}
	for i, d := range diags {
		if i > 0 {
			fmt.Fprintln(w)
		}
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject != nil && d.Subject.Filename != "" {
			fmt.Fprintf(w, "%s: ", position(*d.Subject))
		}
		fmt.Fprintf(w, "%s: %s\n", sev, d.Summary)
		if d.Detail != "" {
			for line := range strings.SplitSeq(d.Detail, "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
		if d.Subject != nil && !IsSensitive(d) {
			writeSnippet(w, *d.Subject, src.get(d.Subject.Filename))
		}
	}
}

// writeSnippet writes the first line of r with carets under r.
func writeSnippet(w io.Writer, r hcl.Range, b []byte) {
	start := r.Start.Byte
	if b == nil || start < 0 || start > len(b) || r.Start.Line < 1 {
		return
	}
	lineStart := bytes.LastIndexByte(b[:start], '\n') + 1
	lineEnd := len(b)
	if i := bytes.IndexByte(b[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end := min(max(r.End.Byte, start), lineEnd)
	line := strings.TrimRight(printable(b[lineStart:lineEnd]), "\r")
	var pad strings.Builder
	for _, c := range printable(b[lineStart:start]) {
		if c == '\t' {
			pad.WriteRune('\t')
		} else {
			pad.WriteRune(' ')
		}
	}
	n := max(1, utf8.RuneCount(b[start:end]))
	gutter := fmt.Sprintf("%6d", r.Start.Line)
	fmt.Fprintf(w, "%s | %s\n", gutter, line)
	fmt.Fprintf(w, "%s | %s%s\n", strings.Repeat(" ", len(gutter)), pad.String(), strings.Repeat("^", n))
}

// printable replaces control characters but tabs, so a snippet cannot
// drive the terminal.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r != '\t' && r != '\r' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, string(b))
}

type sources struct {
	files map[string]*hcl.File
	read  map[string][]byte
}

func (s sources) get(name string) []byte {
	if name == "" {
		return nil
	}
	if f := s.files[name]; f != nil {
		return f.Bytes
	}
	b, ok := s.read[name]
	if !ok {
		if st, err := os.Stat(name); err == nil && st.Mode().IsRegular() {
			b, _ = os.ReadFile(name)
		}
		s.read[name] = b
	}
	return b
}

// sortDiagnostics orders diags by position (those without one first), so
// that output does not depend on map order inside HCL; for the same reason
// it rewrites HCL's hints for unknown functions (see resuggestFunction).
func sortDiagnostics(diags hcl.Diagnostics) {
	resuggestFunction(diags)
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		ra, rb := a.Subject, b.Subject
		switch {
		case ra == nil && rb == nil:
			return 0
		case ra == nil:
			return -1
		case rb == nil:
			return 1
		}
		if c := cmp.Compare(ra.Filename, rb.Filename); c != 0 {
			return c
		}
		if c := cmp.Compare(ra.Start.Byte, rb.Start.Byte); c != 0 {
			return c
		}
		// Several diagnostics on one spot (such as missing arguments)
		// come from map iteration inside hcldec.
		return cmp.Or(cmp.Compare(a.Summary, b.Summary), cmp.Compare(a.Detail, b.Detail))
	})
}
