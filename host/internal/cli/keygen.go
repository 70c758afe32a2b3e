package cli

import (
	"fmt"
	"io"

	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// runKeygen writes a new Ed25519 key pair for signing control requests:
// FILE (the private key, PKCS #8 PEM, mode 0600) and FILE.pub (the public
// key, PKIX PEM), which a principal's public_key_file names.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", "FILE", stderr)
	pos, rc := parseArgs(fs, args, "the FILE to write the private key to (FILE.pub gets the public key)", 1, 1)
	if rc >= 0 {
		return rc
	}
	pub, err := auth.GenerateKeyFiles(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers keygen: %v\n", err)
		return exitHostError
	}
	fmt.Fprintf(stdout, "wrote the private key to %s (mode 0600) and the public key to %s\n", pos[0], pub)
	fmt.Fprintf(stdout, "the host's control block names the public key: principal \"NAME\" { public_key_file = %q ... }\n", pub)
	return exitOK
}
