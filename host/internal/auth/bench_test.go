package auth

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAuthenticate measures one signed request's verification: in
// memory, and with the nonce file (an append and an fsync per request).
func BenchmarkAuthenticate(b *testing.B) {
	for _, withFile := range []bool{false, true} {
		name := "memory"
		if withFile {
			name = "nonce-file"
		}
		b.Run(name, func(b *testing.B) {
			pub, priv, _ := ed25519.GenerateKey(nil)
			s, _ := NewEd25519Signer("ops", priv)
			o := Options{Require: true, MaxNonces: b.N + 1,
				Principals: []PrincipalConfig{{Name: "ops", KeyID: "ops", PublicKey: pub, Operations: []string{"*"}}}}
			if withFile {
				o.NonceFile = filepath.Join(b.TempDir(), "nonces")
			}
			p, err := NewPolicy(o)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			body, scope := []byte(`{"operation": "status"}`), AMQPScope("global.h1")
			sigs := make([]Signature, b.N)
			for i := range sigs {
				sigs[i] = s.Sign(scope, body, time.Now())
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := p.Authenticate(Credentials{Transport: "amqp", Signature: sigs[i], Scope: scope}, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
