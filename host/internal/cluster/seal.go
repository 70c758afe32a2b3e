package cluster

// OWNER: helper A (store).

import "encoding/json"

// Sealer seals the sensitive attributes of a worker's config with the
// cluster's secrets key (AES-256-GCM), so that etcd holds ciphertext for
// them; the other attributes stay readable.
type Sealer struct {
	key []byte
}

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) { return &Sealer{key: key}, errTODO }

// Seal replaces the value of each top-level attribute of cfg named in
// sensitive with its ciphertext.
func (s *Sealer) Seal(cfg json.RawMessage, sensitive []string) (json.RawMessage, error) {
	return nil, errTODO
}

// Open is Seal's inverse.
func (s *Sealer) Open(cfg json.RawMessage, sealed []string) (json.RawMessage, error) {
	return nil, errTODO
}
