package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// File is a parsed configuration: everything but the worker config bodies,
// which File.Decode decodes once the classes are known.
type File struct {
	SystemID string
	Host     HostConfig
	AMQP     *AMQPConfig    // nil when there is no amqp block
	Control  *ControlConfig // nil when there is no control block
	Cluster  *ClusterConfig // nil when there is no cluster block (or it has errors)
	Files    []string       // the files read, in merge order
	Limits   InputLimits    // the input_limits block, defaults applied

	root    *rawSupervisor
	sources map[string]*hcl.File
	failed  bool // Parse reported errors
}

// Sources returns the parsed files by name, for FormatDiagnostics.
func (f *File) Sources() map[string]*hcl.File { return f.sources }

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "system_id"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "host"},
		{Type: "amqp"},
		{Type: "control"},
		{Type: "cluster"},
		{Type: "input_limits"},
		{Type: "supervisor", LabelNames: []string{"name"}},
		{Type: "worker", LabelNames: []string{"name"}},
	},
}

// Parse reads the configuration at path, a file or a directory whose *.hcl
// files (not hidden ones) are merged in lexical order, and decodes
// system_id, host, amqp and the supervisor/worker tree. The worker config
// bodies are decoded by File.Decode.
//
// Parse keeps going after errors so that all of them are reported; the File
// is nil only when no file could be read. A file with syntax errors is left
// out of the merge.
func Parse(path string) (*File, hcl.Diagnostics) {
	names, baseDir, diags := configFiles(path)
	if diags.HasErrors() {
		return nil, diags
	}
	f := &File{
		SystemID: DefaultSystemID,
		Host: HostConfig{
			Name:              defaultHostName(),
			PluginDir:         filepath.Join(baseDir, DefaultPluginDir),
			StateDir:          filepath.Join(baseDir, DefaultStateDir),
			HTTPAddr:          DefaultHTTPAddr,
			LogLevel:          DefaultLogLevel,
			StartConcurrency:  DefaultStartConcurrency,
			WarmSpares:        DefaultWarmSpares,
			LogLines:          DefaultLogLines,
			MetricsInterval:   DefaultMetricsInterval,
			HeartbeatInterval: DefaultHeartbeatInterval,
			HTTP:              defaultHTTPSettings(),
			PluginLog: PluginLogConfig{BytesPerSecond: DefaultPluginLogRate,
				LinesPerSecond: DefaultPluginLogLines, LineMax: DefaultPluginLogLineMax},
		},
		Files:  names,
		Limits: DefaultInputLimits(),
	}
	p := hclparse.NewParser()
	m := merger{f: f, diags: &diags}
	for _, name := range names {
		hf, d := p.ParseHCLFile(name)
		diags = append(diags, d...)
		if hf == nil || d.HasErrors() {
			continue
		}
		dir := filepath.Dir(name)
		m.file(&scope{ctx: evalContext(dir), dir: dir, diags: &diags}, hf.Body)
	}
	f.sources = p.Files()
	m.finishCluster() // cluster.go: what depends on the other blocks
	m.finishBus()     // bus.go: refused with an amqp block
	m.tree(names[0])
	for _, s := range m.secretScopes {
		scrubSensitive(diags, s.attrs, s.ctx)
	}
	sortDiagnostics(diags)
	f.failed = diags.HasErrors()
	return f, diags
}

// configFiles lists the files to read for path, and the directory that
// default relative paths are relative to.
func configFiles(path string) ([]string, string, hcl.Diagnostics) {
	fail := func(detail string) ([]string, string, hcl.Diagnostics) {
		return nil, "", hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   detail,
		}}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fail(err.Error() + ".")
	}
	if !st.IsDir() {
		return []string{path}, filepath.Dir(path), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return fail(err.Error() + ".")
	}
	var names []string // os.ReadDir sorts by name
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".hcl") {
			continue
		}
		full := filepath.Join(path, n)
		if st, err := os.Stat(full); err != nil || st.IsDir() {
			continue
		}
		names = append(names, full)
	}
	if len(names) == 0 {
		return fail(fmt.Sprintf("The directory %q holds no *.hcl files.", path))
	}
	return names, path, nil
}

func defaultHostName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// merger merges the top level of every file into one File.
type merger struct {
	f     *File
	diags *hcl.Diagnostics
	// first definitions, for "already set at" references
	systemID, host, amqp *hcl.Range
	control              *hcl.Range
	cluster              *hcl.Range
	supervisors          []topBlock
	workers              []topBlock
	// attributes whose values must not appear in diagnostics
	secretScopes []secretScope

	limits *hcl.Range // the first input_limits block
	bus    *hcl.Range // the host block's bus block
}

type topBlock struct {
	sc    *scope
	block *hcl.Block
}

type secretScope struct {
	attrs []*hcl.Attribute
	ctx   *hcl.EvalContext
}

func (m *merger) file(sc *scope, body hcl.Body) {
	content, d := body.Content(rootSchema)
	sc.add(d...)
	if attr := content.Attributes["system_id"]; attr != nil {
		if m.duplicate(&m.systemID, attr.NameRange, "argument", "system_id") {
			var id string
			if sc.str(attr, &id) {
				if err := validateIdent("system id", id); err != nil {
					sc.errorf(attr.Expr.Range(), "Invalid system_id", "%s.", upperFirst(err.Error()))
				} else {
					m.f.SystemID = id
				}
			}
		}
	}
	for _, b := range content.Blocks {
		switch b.Type {
		case "host":
			if m.duplicate(&m.host, b.DefRange, "block", "host") {
				m.decodeHost(sc, b)
			}
		case "amqp":
			if m.duplicate(&m.amqp, b.DefRange, "block", "amqp") {
				m.decodeAMQP(sc, b)
			}
		case "control":
			if m.duplicate(&m.control, b.DefRange, "block", "control") {
				m.decodeControl(sc, b)
			}
		case "cluster":
			if m.duplicate(&m.cluster, b.DefRange, "block", "cluster") {
				m.decodeCluster(sc, b) // cluster.go
			}
		case "input_limits":
			if m.duplicate(&m.limits, b.DefRange, "block", "input_limits") {
				decodeInputLimits(sc, b, &m.f.Limits)
			}
		case "supervisor":
			m.supervisors = append(m.supervisors, topBlock{sc, b})
		case "worker":
			m.workers = append(m.workers, topBlock{sc, b})
		}
	}
}

// duplicate records the first definition of a top-level item; it reports a
// later one and returns false.
func (m *merger) duplicate(first **hcl.Range, r hcl.Range, kind, name string) bool {
	if *first == nil {
		*first = r.Ptr()
		return true
	}
	summary, detail := "Duplicate argument", "The argument %q was already set at %s."
	if kind == "block" {
		summary, detail = "Duplicate "+name+" block", "Only one %q block is allowed; the first is at %s."
	}
	*m.diags = append(*m.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, name, position(**first)),
		Subject:  r.Ptr(),
	})
	return false
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
