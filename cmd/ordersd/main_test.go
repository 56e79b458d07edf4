package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// stream, fetch loop, subscription, server and connection must end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
