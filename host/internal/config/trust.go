package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Limits of host.plugin_env.
const (
	maxPluginEnv      = 64       // variables
	maxPluginEnvValue = 8 * 1024 // bytes of one value
)

// envNameRE is a portable environment variable name.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// reservedEnvPrefixes are the prefixes of the variables the host and
// go-plugin set for a plugin themselves (the handshake, the socket
// directory, the log level, the parent pid): plugin_env may not set them.
var reservedEnvPrefixes = []string{"PLUGIN_", "DYNWORKERS_"}

// decodePluginTrust decodes the host block's plugin_lock and plugin_env.
func (m *merger) decodePluginTrust(sc *scope, attrs hcl.Attributes, h *HostConfig) {
	var lock string
	if attr := attrs["plugin_lock"]; sc.str(attr, &lock) {
		if lock == "" {
			sc.errorf(attr.Expr.Range(), "Invalid plugin_lock",
				"The argument \"plugin_lock\" must not be empty: give the lock file's path (written by \"dynworkers plugins lock\"), or remove the argument to run any trusted binary of plugin_dir.")
		} else {
			h.PluginLock = resolvePath(sc.dir, lock)
		}
	}
	attr := attrs["plugin_env"]
	if attr == nil {
		return
	}
	// The values may be secrets (a proxy's password, an API key): no
	// diagnostic repeats them. The names are not secret, and the
	// diagnostics below name them.
	m.secretScopes = append(m.secretScopes, secretScope{attrs: envValueAttrs(attr), ctx: sc.ctx})
	v, ok := sc.value(attr, cty.Map(cty.String))
	if !ok {
		return
	}
	env := map[string]string{}
	bad := false
	if n := v.LengthInt(); n > maxPluginEnv {
		sc.errorf(attr.Expr.Range(), "Invalid plugin_env", "The argument \"plugin_env\" sets %d variables; at most %d are allowed.", n, maxPluginEnv)
		return
	}
	for name, val := range v.AsValueMap() {
		s := val.AsString()
		switch {
		case !envNameRE.MatchString(name):
			sc.errorf(attr.Expr.Range(), "Invalid plugin_env",
				"The variable name %q in plugin_env is not valid: use letters, digits and underscores, not starting with a digit, at most 128 characters.", name)
		case slices.ContainsFunc(reservedEnvPrefixes, func(p string) bool { return strings.HasPrefix(strings.ToUpper(name), p) }):
			sc.errorf(attr.Expr.Range(), "Invalid plugin_env",
				"The variable %q in plugin_env is reserved: names starting with %s are set by the host and go-plugin for the handshake.", name, strings.Join(reservedEnvPrefixes, " or "))
		case strings.ContainsRune(s, 0):
			sc.errorf(attr.Expr.Range(), "Invalid plugin_env", "The value of %q in plugin_env contains a NUL byte.", name)
		case len(s) > maxPluginEnvValue:
			sc.errorf(attr.Expr.Range(), "Invalid plugin_env", "The value of %q in plugin_env is %d bytes long; at most %d are allowed.", name, len(s), maxPluginEnvValue)
		default:
			env[name] = s
			continue
		}
		bad = true
	}
	if !bad {
		h.PluginEnv = env
	}
}

// PluginEnvList returns host.plugin_env as "KEY=value" entries sorted by
// name, as pluginproc.Options.Env wants them.
func (h HostConfig) PluginEnvList() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(h.PluginEnv)) {
		out = append(out, fmt.Sprintf("%s=%s", k, h.PluginEnv[k]))
	}
	return out
}

// envValueAttrs are the parts of a plugin_env attribute holding values:
// each value of an object written out ({ NAME = value, ... }), so that
// scrubbing hides the values but not the names; the whole attribute
// otherwise.
func envValueAttrs(attr *hcl.Attribute) []*hcl.Attribute {
	obj, ok := attr.Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return []*hcl.Attribute{attr}
	}
	out := make([]*hcl.Attribute, 0, len(obj.Items))
	for _, item := range obj.Items {
		out = append(out, &hcl.Attribute{Name: attr.Name, Expr: item.ValueExpr, Range: attr.Range, NameRange: attr.NameRange})
	}
	return out
}
