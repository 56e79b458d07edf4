package systemtest

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/ordersd/ordersd/internal/cli"
)

// TestMain runs the package's tests and fails them if any goroutine
// outlives them. With ORDERSD_TEST_RUN_MAIN set, the test binary is
// ordersd itself instead (cli.Main, as cmd/ordersd runs it): tests start
// it as a child process to send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERSD_TEST_RUN_MAIN") != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}
