package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the package's tests and fails them if any goroutine
// outlives them. With ORDERSD_TEST_RUN_MAIN set, the test binary is
// ordersd itself instead: tests start it as a child process to send it
// real signals.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERSD_TEST_RUN_MAIN") != "" {
		os.Args = append([]string{"ordersd"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
