package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/dynworkers/dynworkers/host/internal/config"
)

// stdin is what `send -` reads; tests replace it.
var stdin io.Reader = os.Stdin

// runSend publishes a raw control message body (a Blinkenlights envelope
// or a bare payload) read from a file or stdin, and prints each reply in
// full as JSON. The body is sent as it is, even when it is not JSON, so
// that send can also show how hosts treat a bad message.
func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", "FILE|- "+clientFlagsUsage, stderr)
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the FILE holding the message (- for stdin)", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "send", "%s", msg)
	}
	body, err := readMessage(pos[0])
	if err != nil {
		return usageError(stderr, "send", "%v", err)
	}
	answers, rc := co.do(call{method: http.MethodPost, path: "/v1/control", body: body, message: body}, stderr)
	if rc != exitOK {
		return rc
	}
	rc = exitOK
	for _, a := range answers {
		if co.all && a.host != "" {
			// stderr keeps stdout a stream of JSON replies.
			fmt.Fprintf(stderr, "dynworkers send: reply from %s\n", a.host)
		}
		printJSON(stdout, a.raw)
		if !a.reply.OK {
			rc = exitHostError
		}
	}
	return rc
}

// readMessage reads a message body from path, or stdin for "-".
func readMessage(path string) ([]byte, error) {
	r := stdin
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, path
	}
	body, err := io.ReadAll(io.LimitReader(r, config.MaxControlMessageBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", name, err)
	case len(body) > config.MaxControlMessageBytes:
		return nil, fmt.Errorf("%s is larger than any host takes a control message (64 MiB, the most input_limits.control_message_size allows)", name)
	}
	return body, nil
}
