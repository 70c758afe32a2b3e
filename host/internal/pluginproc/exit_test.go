package pluginproc

import (
	"fmt"
	"strings"
	"testing"
)

func TestExitErrorMessage(t *testing.T) {
	cases := []struct {
		e    ExitError
		want string
	}{
		{ExitError{Code: 3}, "exit status 3"},
		{ExitError{Code: -1, Signal: "SIGKILL"}, "killed by SIGKILL"},
		{ExitError{Code: -1, Signal: "SIGKILL", Reason: "did not stop within shutdown_timeout (5s)"}, "did not stop within shutdown_timeout (5s): killed by SIGKILL"},
		{ExitError{Code: 2, StderrTail: "{\"@level\":\"info\",\"@message\":\"hi\"}\npanic: boom\n\ngoroutine 1 [running]:"}, "exit status 2: panic: boom"},
		{ExitError{Code: 1, StderrTail: `{"@level":"error","@message":"worker exited","error":"lost connection"}` + "\n" + `{"@level":"info","@message":"bye"}`}, "exit status 1: worker exited: lost connection"},
		{ExitError{Code: 1, StderrTail: "plain text\nlast words\n{\"@level\":\"info\",\"@message\":\"bye\"}"}, "exit status 1: last words"},
		{ExitError{Code: -1, Signal: "SIGKILL", StderrTail: "plain text"}, "killed by SIGKILL"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestStderrTail(t *testing.T) {
	tail := newStderrTail()
	// go-plugin writes a line and its newline separately.
	for i := range 30 {
		fmt.Fprintf(tail, "line %d", i)
		tail.Write([]byte("\n"))
	}
	lines := strings.Split(tail.String(), "\n")
	if len(lines) != tailLines || lines[0] != "line 10" || lines[tailLines-1] != "line 29" {
		t.Fatalf("tail = %q", lines)
	}

	tail = newStderrTail()
	tail.Write([]byte("before\npanic: boom\n"))
	for i := range 40 {
		fmt.Fprintf(tail, "stack %d\n", i)
	}
	tail.Write([]byte("unfinished"))
	lines = strings.Split(tail.String(), "\n")
	if lines[0] != "panic: boom" || len(lines) != tailLines+1 || lines[tailLines] != "unfinished" {
		t.Fatalf("tail after panic = %q", lines)
	}

	tail = newStderrTail()
	tail.Write([]byte(strings.Repeat("x", 5000) + "\n"))
	if got := len(tail.String()); got != tailLineMax {
		t.Errorf("long line kept %d bytes, want %d", got, tailLineMax)
	}
}
