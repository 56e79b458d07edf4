package testsupport

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// LogEnv names the environment variable that shows the logs of the parts
// a test runs (ORDERSD_TEST_LOG=1); they are discarded otherwise, so a
// failing test's output shows the test's own findings.
const LogEnv = "ORDERSD_TEST_LOG"

func logEnabled() bool { return os.Getenv(LogEnv) != "" }

// Logger is the logger to give the parts a test runs: debug lines to
// stderr with ORDERSD_TEST_LOG set, nothing otherwise.
func Logger() *slog.Logger {
	if !logEnabled() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Context returns a context that ends after d or with the test, so that
// no call of a test can hang it.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
