package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"time"
)

// The names of the signature headers, in AMQP headers and in HTTP.
const (
	HeaderKeyID     = "dynworkers-key-id"
	HeaderTimestamp = "dynworkers-timestamp"
	HeaderNonce     = "dynworkers-nonce"
	HeaderSignature = "dynworkers-signature"
)

// signedPrefix starts every signed string; a later version of the format
// changes it.
const signedPrefix = "dynworkers-control-v1\n"

// MinSecretLen is the shortest HMAC secret accepted, in bytes.
const MinSecretLen = 32

// AMQPScope is the scope of a message published with routing key key.
func AMQPScope(key string) string { return "amqp " + key }

// HTTPScope is the scope of an HTTP request: its method and its request
// target as sent on the wire (path and query, escaped).
func HTTPScope(method, target string) string { return "http " + method + " " + target }

// SignedString returns the bytes a signature covers (see the package
// documentation).
func SignedString(keyID, timestamp, nonce, scope string, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(signedPrefix) + len(keyID) + len(timestamp) + len(nonce) + len(scope) + 4 + len(body))
	b.WriteString(signedPrefix)
	for _, s := range []string{keyID, timestamp, nonce, scope} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	b.Write(body)
	return b.Bytes()
}

// Signature is the four values a signed request carries.
type Signature struct {
	KeyID, Timestamp, Nonce, Value string
}

// AMQPHeaders returns the signature as AMQP message headers (an amqp.Table
// converts from it).
func (s Signature) AMQPHeaders() map[string]any {
	return map[string]any{
		HeaderKeyID: s.KeyID, HeaderTimestamp: s.Timestamp, HeaderNonce: s.Nonce, HeaderSignature: s.Value,
	}
}

// SetHTTP sets the signature's HTTP headers on h.
func (s Signature) SetHTTP(h http.Header) {
	h.Set(HeaderKeyID, s.KeyID)
	h.Set(HeaderTimestamp, s.Timestamp)
	h.Set(HeaderNonce, s.Nonce)
	h.Set(HeaderSignature, s.Value)
}

// Signer signs requests with one private key: Ed25519 or an HMAC secret.
type Signer struct {
	keyID  string
	ed     ed25519.PrivateKey
	secret []byte
}

// NewEd25519Signer returns a Signer for an Ed25519 private key.
func NewEd25519Signer(keyID string, key ed25519.PrivateKey) (*Signer, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("not an Ed25519 private key")
	}
	return &Signer{keyID: keyID, ed: key}, nil
}

// NewHMACSigner returns a Signer for an HMAC-SHA256 secret.
func NewHMACSigner(keyID string, secret []byte) (*Signer, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("the HMAC secret is %d bytes; it must be at least %d", len(secret), MinSecretLen)
	}
	return &Signer{keyID: keyID, secret: bytes.Clone(secret)}, nil
}

// KeyID returns the signer's key id.
func (s *Signer) KeyID() string { return s.keyID }

// Sign signs body for scope at time now, with a fresh random nonce.
func (s *Signer) Sign(scope string, body []byte, now time.Time) Signature {
	var n [18]byte
	_, _ = rand.Read(n[:]) // crypto/rand.Read never fails (Go 1.24+)
	sig := Signature{
		KeyID:     s.keyID,
		Timestamp: strconv.FormatInt(now.Unix(), 10),
		Nonce:     base64.RawURLEncoding.EncodeToString(n[:]),
	}
	msg := SignedString(sig.KeyID, sig.Timestamp, sig.Nonce, scope, body)
	var raw []byte
	if s.ed != nil {
		raw = ed25519.Sign(s.ed, msg)
	} else {
		m := hmac.New(sha256.New, s.secret)
		m.Write(msg)
		raw = m.Sum(nil)
	}
	sig.Value = base64.StdEncoding.EncodeToString(raw)
	return sig
}

// LoadSigner reads a private key file for keyID: a PEM "PRIVATE KEY"
// (PKCS #8) holding an Ed25519 key, as GenerateKeyFiles and
// `openssl genpkey -algorithm ed25519` write, or else an HMAC secret file
// (see ReadSecretFile). The file must not be readable by group or others.
func LoadSigner(path, keyID string) (*Signer, error) {
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		key, err := parsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		return NewEd25519Signer(keyID, key)
	}
	s, err := NewHMACSigner(keyID, secretBytes(data))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return s, nil
}

func parsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (PKCS #8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the private key: %w", err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is a %T, not an Ed25519 key", k)
	}
	return ed, nil
}

// readPrivateFile reads a file that holds a secret, refusing one that
// group or others may read or write.
func readPrivateFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: a secret must be readable by its owner only (chmod 600 %s)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	return data, nil
}

// secretBytes is the secret in an HMAC key file: its content without
// surrounding whitespace (a trailing newline is usual).
func secretBytes(data []byte) []byte { return bytes.TrimSpace(data) }

// ReadSecretFile reads an HMAC secret file: its content, without
// surrounding whitespace, is the secret, at least MinSecretLen bytes (for
// example `head -c 32 /dev/urandom | base64 > ops.secret`: the 44 base64
// characters are the secret). The file must not be readable by group or
// others.
func ReadSecretFile(path string) (Secret, error) {
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	s := secretBytes(data)
	if len(s) < MinSecretLen {
		return nil, fmt.Errorf("key file %s holds %d bytes of secret; an HMAC secret must be at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(s), MinSecretLen, path)
	}
	return Secret(bytes.Clone(s)), nil
}

// Secret is an HMAC secret; it never prints.
type Secret []byte

func (Secret) String() string               { return "(sensitive)" }
func (Secret) GoString() string             { return "(sensitive)" }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"(sensitive)"`), nil }

// ParsePublicKey parses an Ed25519 public key: a PEM "PUBLIC KEY" block
// (PKIX, as GenerateKeyFiles and `openssl pkey -pubout` write) or the 32
// bytes of the key in standard base64.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	if bytes.Contains(text, []byte("-----BEGIN")) {
		block, _ := pem.Decode(text)
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, errors.New("not a PEM \"PUBLIC KEY\" block")
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cannot parse the public key: %w", err)
		}
		ed, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("the public key is a %T, not an Ed25519 key", k)
		}
		return ed, nil
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(text)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key: use a PEM \"PUBLIC KEY\" block or the key's 32 bytes in base64")
	}
	return ed25519.PublicKey(raw), nil
}

// GenerateKeyFiles writes a new Ed25519 key pair: the private key (PKCS #8
// PEM) to privPath with mode 0600, the public key (PKIX PEM) to
// privPath+".pub" with mode 0644. It refuses to overwrite either file.
func GenerateKeyFiles(privPath string) (pubPath string, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	pubPath = privPath + ".pub"
	if _, err := os.Lstat(pubPath); err == nil {
		return "", fmt.Errorf("%s exists: remove it or choose another name", pubPath)
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		_ = os.Remove(privPath)
		return "", err
	}
	return pubPath, nil
}

// writeNew creates path with mode perm (never an existing file) and
// writes data.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists: remove it or choose another name", path)
		}
		return err
	}
	// The umask may have cleared bits, never added any; Chmod makes the
	// mode exact.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
