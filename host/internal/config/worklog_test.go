package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestWorkerLogSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	for _, tc := range []struct {
		name      string
		src       string
		wantLines int
		wantFiles *LogFilesConfig
	}{
		{"defaults", "system_id = \"s\"\n", DefaultLogLines, nil},
		{"log_lines", "host {\n  log_lines = 250\n}\n", 250, nil},
		{"log_lines 0 is the default", "host {\n  log_lines = 0\n}\n", DefaultLogLines, nil},
		{"log_lines at its bound", "host {\n  log_lines = 1000000\n}\n", MaxLogLines, nil},
		{"log_files with defaults", "host {\n  log_files {}\n}\n", DefaultLogLines,
			&LogFilesConfig{Dir: filepath.Join(dir, "logs"), MaxSize: 10 << 20, Backups: 5}},
		{"log_files set", "host {\n  log_files {\n    dir = \"var/worker-logs\"\n    max_size = \"2MiB\"\n    backups = 3\n  }\n}\n", DefaultLogLines,
			&LogFilesConfig{Dir: filepath.Join(dir, "var/worker-logs"), MaxSize: 2 << 20, Backups: 3}},
		{"log_files absolute dir, size as a number", "host {\n  log_files {\n    dir = \"/srv/logs\"\n    max_size = 1048576\n  }\n}\n", DefaultLogLines,
			&LogFilesConfig{Dir: "/srv/logs", MaxSize: 1 << 20, Backups: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, path, tc.src)
			f, diags := Parse(path)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if f.Host.LogLines != tc.wantLines {
				t.Errorf("LogLines = %d, want %d", f.Host.LogLines, tc.wantLines)
			}
			switch got := f.Host.LogFiles; {
			case (got == nil) != (tc.wantFiles == nil):
				t.Errorf("LogFiles = %+v, want %+v", got, tc.wantFiles)
			case got != nil && *got != *tc.wantFiles:
				t.Errorf("LogFiles = %+v, want %+v", *got, *tc.wantFiles)
			}
		})
	}
}

func TestWorkerLogSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.hcl")
	for src, want := range map[string]string{
		"host {\n  log_lines = -1\n}\n":                              `"log_lines" must be a whole number`,
		"host {\n  log_lines = 1000001\n}\n":                         `"log_lines" must be a whole number from 0 to 1000000`,
		"host {\n  log_lines = 2.5\n}\n":                             `"log_lines" must be a whole number`,
		"host {\n  log_lines = \"many\"\n}\n":                        `log_lines`,
		"host {\n  log_files {\n    dir = \"\"\n  }\n}\n":            `"dir" of log_files must not be empty`,
		"host {\n  log_files {\n    max_size = \"100KiB\"\n  }\n}\n": `"max_size" of log_files must be at least 1MiB`,
		"host {\n  log_files {\n    max_size = \"lots\"\n  }\n}\n":   `"max_size": "lots" is not a size`,
		"host {\n  log_files {\n    backups = 0\n  }\n}\n":           `"backups" of log_files`,
		"host {\n  log_files {\n    backups = 1001\n  }\n}\n":        `"backups" of log_files`,
		"host {\n  log_files {\n    backups = -1\n  }\n}\n":          `"backups" must be a whole number`,
		"host {\n  log_files {\n    size = 3\n  }\n}\n":              `"size" is not expected here`,
		"host {\n  log_files {}\n  log_files {}\n}\n":                `Duplicate log_files block`,
	} {
		writeFile(t, path, src)
		f, diags := Parse(path)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
			t.Errorf("%q: %v; want an error saying %q", src, diags, want)
			continue
		}
		if !strings.Contains(diags.Error(), "c.hcl:2") && !strings.Contains(diags.Error(), "c.hcl:3") {
			t.Errorf("%q: %v; want the error at the attribute's line", src, diags)
		}
		_ = f
	}
}
