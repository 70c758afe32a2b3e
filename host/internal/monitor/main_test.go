package monitor

import (
	"os"
	"testing"
)

// envHelper makes the test binary a helper process instead of running the
// tests (the re-exec pattern of go-plugin's tests): its value says what to
// do.
const envHelper = "MONITOR_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "":
		os.Exit(m.Run())
	case "burn":
		// Burn CPU until killed, so that a test can watch CPU time rise.
		x := 0
		for {
			x++
		}
	default:
		os.Exit(2)
	}
}
