// Command reviewer is the order-review flow as a service of its own: it
// takes created orders from the durable work queue "external-review",
// approves those up to a limit and rejects the others, and acks each.
// Every decision carries the order's revision (expected_revision), so an
// order that changed meanwhile (another reviewer decided, the customer
// cancelled) is left alone. Run ordersd with --review=false to see it take
// over from the built-in worker.
//
//	go run ./cmd/ordersd --review=false
//	go run ./examples/reviewer -addr 127.0.0.1:50051
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// consumer is the reviewer's durable work queue: several reviewers with
// the same name share the orders.
const consumer = "external-review"

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "ordersd node(s), comma-separated, or a dns:/// or xds:/// target")
	ca := flag.String("ca", "", "CA certificates (PEM) of the nodes: TLS; plaintext when empty")
	limit := flag.Int64("limit", 100_000, "largest total (minor units) to approve")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := dial(*addr, *ca)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Ctrl-C: reviews under way finish and are acked, then it exits.
	if err := review(ctx, c, *limit, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// dial connects to ordersd: TLS when a CA is given, with the bearer token
// of ORDERSD_TOKEN when it is set.
func dial(addr, ca string) (*client.Client, error) {
	opts := []client.Option{client.WithInsecure()}
	if ca != "" {
		opts = []client.Option{client.WithCAFile(ca)}
	}
	if token := os.Getenv("ORDERSD_TOKEN"); token != "" {
		opts = append(opts, client.WithBearerToken(token))
	}
	return client.Dial(addr, opts...)
}

// review decides created orders until ctx ends.
func review(ctx context.Context, c *client.Client, limit int64, out io.Writer) error {
	var mu sync.Mutex // protects out: handlers run concurrently
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	return c.Consume(ctx, consumer, client.ConsumeOptions{
		Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
	}, func(ctx context.Context, m *client.Message) error {
		order := m.Event.GetOrder()
		var err error
		decision := "approved"
		if order.GetTotalMinor() <= limit {
			_, err = c.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: order.GetOrderId(), ExpectedRevision: order.GetRevision()})
		} else {
			decision = "rejected"
			_, err = c.RejectOrder(ctx, &ordersv1.RejectOrderRequest{
				OrderId:          order.GetOrderId(),
				ExpectedRevision: order.GetRevision(),
				Reason:           fmt.Sprintf("total %d exceeds the limit of %d", order.GetTotalMinor(), limit),
			})
		}
		switch status.Code(err) {
		case codes.OK:
			say("%s %s", decision, order.GetOrderId())
			return nil
		case codes.Aborted, codes.FailedPrecondition:
			// Also how a repeat ends (an event delivered again after a
			// crash, or after an ack that was lost): the order was
			// decided already, so the handler is idempotent.
			say("skipped %s: it changed since it was created", order.GetOrderId())
			return nil // nothing left to decide: ack it
		default:
			return err // not decided: it comes back after a pause
		}
	})
}
