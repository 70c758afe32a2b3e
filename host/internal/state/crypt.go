package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the size of the state file's key: AES-256.
const KeySize = 32

// ErrWrongKey is wrapped by the error of Load for an encrypted state file
// that the Store has no key for, or another key than the one it was
// written with. Nothing is moved or overwritten: the host must not start.
var ErrWrongKey = errors.New("the state file cannot be decrypted")

// LoadKey reads a state key file: 32 bytes, raw or as 64 hex digits
// (white space around them is ignored). It refuses a file that is not a
// regular file, or that group or others may read or write: the key must be
// at least as private as the state it protects.
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state_key_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state_key_file: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("state_key_file %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("state_key_file %s has mode %04o: group or others may access it; make it private with chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b := make([]byte, 257)
	n, _ := f.Read(b)
	b = b[:n]
	if len(b) == KeySize {
		return b, nil
	}
	if t := strings.TrimSpace(string(b)); len(t) == 2*KeySize {
		if k, err := hex.DecodeString(t); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("state_key_file %s holds %d bytes: it must hold a 32-byte key, raw or as 64 hex digits (make one with: head -c 32 /dev/urandom > %s)", path, len(b), path)
}

// envelope is the JSON form of an encrypted state file.
type envelope struct {
	Format string `json:"dynworkers_state"`
	// KeyID identifies the key (the first bytes of its SHA-256), so that a
	// wrong key is told from a damaged file.
	KeyID      string `json:"key_id"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// envelopeFormat names the encryption; it is the AEAD's additional data.
const envelopeFormat = "AES-256-GCM v1"

func keyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("dynworkers state key id\x00"), key...))
	return hex.EncodeToString(sum[:6])
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("the state key must be %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a state file's plaintext with a fresh random nonce.
func seal(key, plain []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	env := envelope{Format: envelopeFormat, KeyID: keyID(key), Nonce: nonce,
		Ciphertext: aead.Seal(nil, nonce, plain, []byte(envelopeFormat))}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// isEnvelope reports whether data is an encrypted state file.
func isEnvelope(data []byte) bool {
	var probe struct {
		Format *string `json:"dynworkers_state"`
	}
	return bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) && json.Unmarshal(data, &probe) == nil && probe.Format != nil
}

// open decrypts an encrypted state file with key (nil: no key configured).
func open(key, data []byte, path string) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %s is not a valid encrypted state file (%v)", ErrWrongKey, path, err)
	}
	switch {
	case env.Format != envelopeFormat:
		return nil, fmt.Errorf("%w: %s is encrypted with %q, which this host does not know", ErrWrongKey, path, env.Format)
	case key == nil:
		return nil, fmt.Errorf("%w: %s is encrypted (key id %s) but no host.state_key_file is set: set it to the key file it was written with", ErrWrongKey, path, env.KeyID)
	case env.KeyID != keyID(key):
		return nil, fmt.Errorf("%w: %s was encrypted with another key (key id %s) than the one in host.state_key_file (key id %s): use the key file it was written with", ErrWrongKey, path, env.KeyID, keyID(key))
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(env.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("%w: %s has a nonce of %d bytes, not %d", ErrWrongKey, path, len(env.Nonce), aead.NonceSize())
	}
	plain, err := aead.Open(nil, env.Nonce, env.Ciphertext, []byte(envelopeFormat))
	if err != nil {
		return nil, fmt.Errorf("%w: %s fails authentication with the key of its key id (%s): it was damaged or altered; restore it from a backup or move it aside", ErrWrongKey, path, env.KeyID)
	}
	return plain, nil
}
