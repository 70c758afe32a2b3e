//go:build !linux

package sdk

// waitParentExit is Linux's pidfd wait; elsewhere the watchdog polls.
func waitParentExit(int, func()) bool { return false }
