package main

import (
	"fmt"
	"net"
	"testing"

	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The telnet transport and the echo application as `make run` runs them:
// two plugin processes under a real host, on its embedded bus. A line a
// client sends comes back.
func TestTelnetEchoUnderHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the host and two plugins")
	}
	port := freePort(t)
	sdktest.StartHost(t, sdktest.HostOptions{
		Plugins: []string{sdktest.BuildPlugin(t, "."), sdktest.BuildPlugin(t, "../echo")},
		Config: fmt.Sprintf(`
worker "telnet" {
  class = "telnet"
  config {
    transport_name = "telnet"
    port           = %d
  }
}
worker "echo" {
  class = "echo"
  config { transport_name = "telnet" }
}`, port),
		Wait: []string{"telnet", "echo"},
	})
	c := dial(t, fmt.Sprintf("127.0.0.1:%d", port))
	for _, line := range []string{"hello", "is this thing on?", "bye"} {
		c.send(line + "\r\n")
		if got := c.readLine(); got != line {
			t.Errorf("sent %q, read %q", line, got)
		}
	}
}
