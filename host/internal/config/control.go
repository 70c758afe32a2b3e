package config

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// ControlConfig is the control block: who may send control requests and
// what each may do (see package auth). Nil when the configuration has no
// control block: the host then takes every request, as before, and warns.
type ControlConfig struct {
	// Require refuses every control request that is not authenticated
	// and authorised; false only logs what would be refused.
	Require bool
	// ReplayWindow is how far a signed request's timestamp may be from
	// the host's clock, either side.
	ReplayWindow time.Duration
	// NonceCache bounds the nonces remembered within the window.
	NonceCache int
	// Principals, in declared order; their keys are read and parsed.
	Principals []auth.PrincipalConfig
}

// PolicyOptions returns the options of the auth.Policy the block
// describes.
func (c *ControlConfig) PolicyOptions() auth.Options {
	return auth.Options{
		Require:    c.Require,
		Window:     c.ReplayWindow,
		MaxNonces:  c.NonceCache,
		Principals: slices.Clone(c.Principals),
	}
}

// maxReplayWindow bounds control.replay_window.
const maxReplayWindow = time.Hour

// maxNonceCache bounds control.nonce_cache.
const maxNonceCache = 10_000_000

var controlSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "require"}, {Name: "replay_window"}, {Name: "nonce_cache"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "principal", LabelNames: []string{"name"}}},
}

var principalSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "key_id"}, {Name: "public_key"}, {Name: "public_key_file"}, {Name: "hmac_key_file"},
		{Name: "broker_users"}, {Name: "operations", Required: true}, {Name: "classes"}, {Name: "supervisors"},
	},
}

func (m *merger) decodeControl(sc *scope, b *hcl.Block) {
	content, d := b.Body.Content(controlSchema)
	sc.add(d...)
	c := &ControlConfig{ReplayWindow: auth.DefaultReplayWindow, NonceCache: auth.DefaultNonceCache}
	attrs := content.Attributes
	ok := true
	if attr := attrs["require"]; attr != nil {
		if v, good := sc.value(attr, cty.Bool); good {
			c.Require = v.True()
		} else {
			ok = false
		}
	}
	if attr := attrs["replay_window"]; attr != nil {
		w := c.ReplayWindow
		sc.duration(attr, &w)
		if w > maxReplayWindow {
			sc.errorf(attr.Expr.Range(), "Invalid replay window",
				"The replay_window must be at most %s: a longer one keeps captured messages replayable for longer.", maxReplayWindow)
			ok = false
		} else {
			c.ReplayWindow = w
		}
	}
	if attr := attrs["nonce_cache"]; attr != nil {
		v, good := sc.value(attr, cty.Number)
		n, acc := 0.0, false
		if good {
			n, _ = v.AsBigFloat().Float64()
			acc = v.AsBigFloat().IsInt()
		}
		if !good || !acc || n < 1 || n > maxNonceCache {
			if good {
				sc.errorf(attr.Expr.Range(), "Invalid value", "The argument \"nonce_cache\" must be a whole number from 1 to %d.", maxNonceCache)
			}
			ok = false
		} else {
			c.NonceCache = int(n)
		}
	}
	seen := map[string]hcl.Range{}
	keyIDs := map[string]string{}
	for _, pb := range content.Blocks {
		name := pb.Labels[0]
		if err := validateIdent("principal name", name); err != nil {
			sc.errorf(pb.LabelRanges[0], "Invalid principal name", "%s.", upperFirst(err.Error()))
			ok = false
			continue
		}
		if first, dup := seen[name]; dup {
			sc.errorf(pb.DefRange, "Duplicate principal", "Principal %q is already defined at %s.", name, position(first))
			ok = false
			continue
		}
		seen[name] = pb.DefRange
		p, good := decodePrincipal(sc, pb, name)
		if !good {
			ok = false
			continue
		}
		if p.KeyID != "" {
			if other, dup := keyIDs[p.KeyID]; dup {
				sc.errorf(pb.DefRange, "Duplicate key id", "Principals %q and %q have the same key_id %q: each key needs its own id.", other, name, p.KeyID)
				ok = false
				continue
			}
			keyIDs[p.KeyID] = name
		}
		c.Principals = append(c.Principals, p)
	}
	if !ok {
		return
	}
	// What the checks above did not catch (a broker user two keyless
	// principals claim).
	if _, err := auth.NewPolicy(c.PolicyOptions()); err != nil {
		sc.errorf(b.DefRange, "Invalid control policy", "%s.", upperFirst(err.Error()))
		return
	}
	m.f.Control = c
}

func decodePrincipal(sc *scope, b *hcl.Block, name string) (auth.PrincipalConfig, bool) {
	p := auth.PrincipalConfig{Name: name}
	content, d := b.Body.Content(principalSchema)
	for _, diag := range d {
		if diag.Summary == "Missing required argument" {
			diag.Subject = b.DefRange.Ptr()
			diag.Detail = fmt.Sprintf("Principal %q needs operations: the operations it may use, such as [\"status\", \"list_classes\"] or [\"*\"] for all of %s.", name, quotedList(auth.Operations))
		}
	}
	sc.add(d...)
	ok := !d.HasErrors()
	attrs := content.Attributes

	var keyAttrs []*hcl.Attribute
	for _, n := range []string{"public_key", "public_key_file", "hmac_key_file"} {
		if a := attrs[n]; a != nil {
			keyAttrs = append(keyAttrs, a)
		}
	}
	if len(keyAttrs) > 1 {
		sc.errorf(keyAttrs[1].NameRange, "Conflicting keys",
			"Principal %q sets both %q and %q: give each principal one key (another principal can hold another key).", name, keyAttrs[0].Name, keyAttrs[1].Name)
		ok = false
	}
	if attr := attrs["public_key"]; attr != nil {
		var text string
		if sc.str(attr, &text) {
			if k, err := auth.ParsePublicKey([]byte(text)); err != nil {
				sc.errorf(attr.Expr.Range(), "Invalid public key", "%s.", upperFirst(err.Error()))
				ok = false
			} else {
				p.PublicKey = k
			}
		} else {
			ok = false
		}
	}
	if attr := attrs["public_key_file"]; attr != nil {
		var file string
		if sc.str(attr, &file) {
			file = resolvePath(sc.dir, file)
			k, err := readPublicKeyFile(file)
			if err != nil {
				sc.errorf(attr.Expr.Range(), "Invalid public key file", "%s.", upperFirst(err.Error()))
				ok = false
			} else {
				p.PublicKey = k
			}
		} else {
			ok = false
		}
	}
	if attr := attrs["hmac_key_file"]; attr != nil {
		var file string
		if sc.str(attr, &file) {
			file = resolvePath(sc.dir, file)
			s, err := auth.ReadSecretFile(file)
			if err != nil {
				sc.errorf(attr.Expr.Range(), "Invalid HMAC key file", "%s.", upperFirst(err.Error()))
				ok = false
			} else {
				p.Secret = s
			}
		} else {
			ok = false
		}
	}
	hasKey := len(keyAttrs) > 0
	if attr := attrs["key_id"]; attr != nil {
		var id string
		if sc.str(attr, &id) {
			switch err := auth.CheckKeyID(id); {
			case err != nil:
				sc.errorf(attr.Expr.Range(), "Invalid key id", "%s.", upperFirst(err.Error()))
				ok = false
			case !hasKey:
				sc.errorf(attr.NameRange, "Key id without a key",
					"Principal %q has a key_id but no key: add public_key_file (Ed25519) or hmac_key_file, or remove key_id.", name)
				ok = false
			default:
				p.KeyID = id
			}
		} else {
			ok = false
		}
	} else if hasKey {
		if err := auth.CheckKeyID(name); err != nil {
			sc.errorf(b.LabelRanges[0], "Invalid key id",
				"The key id defaults to the principal's name, and %q cannot be one: %v; set key_id.", name, err)
			ok = false
		}
		p.KeyID = name
	}
	var good bool
	if p.BrokerUsers, good = stringList(sc, attrs["broker_users"], func(s string) string {
		if s == "" {
			return "A broker user must not be empty."
		}
		return ""
	}); !good {
		ok = false
	}
	if !hasKey && attrs["broker_users"] != nil && len(p.BrokerUsers) == 0 && ok {
		sc.errorf(attrs["broker_users"].Expr.Range(), "No identity", "Principal %q has no key and an empty broker_users: nothing could identify it.", name)
		ok = false
	}
	if !hasKey && attrs["broker_users"] == nil {
		sc.errorf(b.DefRange, "No identity",
			"Principal %q has neither a key (public_key_file, public_key or hmac_key_file) nor broker_users: nothing could identify it.", name)
		ok = false
	}
	if p.Operations, good = stringList(sc, attrs["operations"], func(s string) string {
		if s == auth.AllOperations || slices.Contains(auth.Operations, s) {
			return ""
		}
		return fmt.Sprintf("%q is not an operation: use %s, or \"*\" for all.%s", s, quotedList(auth.Operations), didYouMean(s, auth.Operations))
	}); !good {
		ok = false
	}
	if p.Classes, good = stringList(sc, attrs["classes"], func(s string) string {
		if _, err := path.Match(s, ""); err != nil {
			return fmt.Sprintf("%q is not a class pattern (path.Match syntax, such as \"smpp.*\"): %v.", s, err)
		}
		return ""
	}); !good {
		ok = false
	}
	if p.Supervisors, good = stringList(sc, attrs["supervisors"], func(s string) string {
		canon := auth.CanonicalPath(s)
		for seg := range splitPath(canon[len(auth.RootPath):]) {
			if err := ValidateName(seg); err != nil {
				return fmt.Sprintf("%q is not a supervisor path such as \"/\" (all) or \"/campaigns\": %v.", s, err)
			}
		}
		return ""
	}); !good {
		ok = false
	}
	return p, ok
}

// stringList decodes a list of strings, checking each with check (which
// returns a diagnostic detail, or ""). A missing attribute is nil, true.
func stringList(sc *scope, attr *hcl.Attribute, check func(string) string) ([]string, bool) {
	if attr == nil {
		return nil, true
	}
	v, ok := sc.value(attr, cty.List(cty.String))
	if !ok {
		return nil, false
	}
	out := []string{}
	for it := v.ElementIterator(); it.Next(); {
		_, ev := it.Element()
		if ev.IsNull() {
			sc.errorf(attr.Expr.Range(), "Invalid value", "The argument %q must not hold null.", attr.Name)
			return nil, false
		}
		s := ev.AsString()
		if msg := check(s); msg != "" {
			sc.errorf(attr.Expr.Range(), "Invalid value in "+attr.Name, "%s", msg)
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// splitPath yields the segments of a canonical supervisor path.
func splitPath(p string) func(func(string) bool) {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(p); i++ {
			if i == len(p) || p[i] == '/' {
				if i > start && !yield(p[start:i]) {
					return
				}
				start = i + 1
			}
		}
	}
}

// readPublicKeyFile reads an Ed25519 public key file.
func readPublicKeyFile(file string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", file, err)
	}
	k, err := auth.ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}
