// Command ordersd serves orders.v1.OrderService over gRPC, keeping every
// order as events in the NATS JetStream stream ORDERS. `ordersd --help`
// lists its flags; package internal/cli reads them and runs the node.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ordersd/ordersd/internal/cli"
)

// main stops the node on SIGINT or SIGTERM, in order (SIGHUP reloads
// certificates and keys; see internal/cli).
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
