package config

import "github.com/hashicorp/hcl/v2"

// decodeStateKey decodes host.state_key_file: the path of a file holding
// the 32-byte key (raw, or 64 hex digits) with which the state file is
// encrypted (AES-256-GCM). The file itself is read and checked (its mode
// included) when the host opens its state directory.
func (m *merger) decodeStateKey(sc *scope, attrs hcl.Attributes) {
	attr := attrs["state_key_file"]
	var p string
	if !sc.str(attr, &p) {
		return
	}
	if p == "" {
		sc.errorf(attr.Expr.Range(), "Invalid path",
			"The argument \"state_key_file\" must not be empty: name a file of 32 random bytes (for example made with `head -c 32 /dev/urandom > state.key; chmod 600 state.key`), or remove the argument to keep the state file unencrypted.")
		return
	}
	m.f.Host.StateKeyFile = resolvePath(sc.dir, p)
}
