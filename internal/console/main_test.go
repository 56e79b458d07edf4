package console_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// nodes, the browsers and their connections must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
