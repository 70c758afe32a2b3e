package cluster

// OWNER: helper A (store).

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// sealedKey is the one key of the JSON object a sealed attribute's value
// becomes: {"$sealed": "<base64 of nonce || ciphertext>"}.
const sealedKey = "$sealed"

// Sealer seals the sensitive attributes of a worker's config with the
// cluster's secrets key (AES-256-GCM), so that etcd holds ciphertext for
// them; the other attributes stay readable.
//
// Each sensitive top-level attribute's JSON value is encrypted on its own
// with a fresh random nonce, the attribute's name as the additional data
// (so a sealed value cannot be moved to another attribute), and replaced
// by {"$sealed": "<base64(nonce || ciphertext)>"}.
type Sealer struct {
	key  []byte
	aead cipher.AEAD
}

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("cluster secrets key: must be 32 bytes (AES-256), got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cluster secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cluster secrets key: %w", err)
	}
	return &Sealer{key: bytes.Clone(key), aead: aead}, nil
}

// decodeObject decodes cfg (a JSON object; empty or null is {}).
func decodeObject(cfg json.RawMessage) (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	t := bytes.TrimSpace(cfg)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return obj, nil
	}
	if err := json.Unmarshal(t, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("the worker config is not a JSON object")
	}
	return obj, nil
}

// Seal replaces the value of each top-level attribute of cfg named in
// sensitive with its ciphertext. Attributes not in cfg are skipped.
func (s *Sealer) Seal(cfg json.RawMessage, sensitive []string) (json.RawMessage, error) {
	obj, err := decodeObject(cfg)
	if err != nil {
		return nil, err
	}
	for _, name := range sensitive {
		v, ok := obj[name]
		if !ok {
			continue
		}
		nonce := make([]byte, s.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("sealing config attribute %q: %w", name, err)
		}
		ct := s.aead.Seal(nonce, nonce, v, []byte(name))
		sealed, err := json.Marshal(map[string]string{sealedKey: base64.StdEncoding.EncodeToString(ct)})
		if err != nil {
			return nil, err
		}
		obj[name] = sealed
	}
	return json.Marshal(obj)
}

// Open is Seal's inverse: it decrypts the attributes named in sealed. A
// value that is not sealed, or does not open with this key (another key,
// or tampered with), is an error naming the attribute, never its value.
func (s *Sealer) Open(cfg json.RawMessage, sealed []string) (json.RawMessage, error) {
	obj, err := decodeObject(cfg)
	if err != nil {
		return nil, err
	}
	for _, name := range sealed {
		v, ok := obj[name]
		if !ok {
			continue
		}
		var box map[string]string
		if err := json.Unmarshal(v, &box); err != nil || len(box) != 1 || box[sealedKey] == "" {
			return nil, fmt.Errorf("config attribute %q is not a sealed value", name)
		}
		raw, err := base64.StdEncoding.DecodeString(box[sealedKey])
		if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
			return nil, fmt.Errorf("config attribute %q: the sealed value is malformed", name)
		}
		n := s.aead.NonceSize()
		pt, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
		if err != nil {
			return nil, fmt.Errorf("config attribute %q: cannot open the sealed value (another secrets key, or it was altered)", name)
		}
		if !json.Valid(pt) {
			return nil, fmt.Errorf("config attribute %q: the opened value is not JSON", name)
		}
		obj[name] = pt
	}
	return json.Marshal(obj)
}
