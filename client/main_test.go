package client_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// ordersdAddr is where an ordersd node listens, such as "127.0.0.1:50051":
// in these examples, a node that TestMain started (with its review worker).
var ordersdAddr string

// TestMain starts the node that the examples call; tests start their own.
func TestMain(m *testing.M) {
	n, err := testnode.Start(testnode.Options{Review: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ordersdAddr = n.Addr()
	code := m.Run()
	if err := n.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close the examples' node:", err)
		code = 1
	}
	// Every Consume, Watch and connection of the tests has ended.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
		code = 1
	}
	os.Exit(code)
}
