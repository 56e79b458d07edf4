// Command publisher places orders with ordersd: the publisher of the
// article ordersd grew from, now an ordersd client. Each order gets a
// request id from the client library, so a create retried on another node
// (its node died mid-call) is stored once.
//
//	go run ./examples/publisher -addr 127.0.0.1:50051 -count 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "ordersd node(s), comma-separated, or a dns:/// or xds:/// target")
	ca := flag.String("ca", "", "CA certificates (PEM) of the nodes: TLS; plaintext when empty")
	count := flag.Int("count", 5, "how many orders to place")
	customer := flag.String("customer", "alice", "the customer placing them")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := dial(*addr, *ca)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := publish(ctx, c, *customer, *count, os.Stdout); err != nil {
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

// catalog is what the publisher orders, in turn: cheap and dear items, so
// that a reviewer with the default limit (100000) approves some orders
// and rejects others.
var catalog = []*ordersv1.LineItem{
	{Sku: "BOOK-42", Quantity: 2, UnitPriceMinor: 1250},
	{Sku: "LAPTOP-9", Quantity: 1, UnitPriceMinor: 189_900},
}

// publish places count orders of customer and prints each.
func publish(ctx context.Context, c *client.Client, customer string, count int, out io.Writer) error {
	for i := range count {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := c.CreateOrder(callCtx, &ordersv1.CreateOrderRequest{
			CustomerId:   customer,
			CurrencyCode: "EUR",
			Items:        []*ordersv1.LineItem{catalog[i%len(catalog)]},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("order %d of %d: %w", i+1, count, err)
		}
		o := res.GetOrder()
		fmt.Fprintf(out, "created %s total %d %s\n", o.GetOrderId(), o.GetTotalMinor(), o.GetCurrencyCode())
	}
	return nil
}
