package main

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// TestMain fails the tests if a goroutine outlives them: the program's
// client, streams and handlers must all end when it stops.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The publisher places the orders it is asked for, each stored once.
func TestPublisherPlacesOrders(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{})
	c, err := dial(n.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testsupport.Context(t, time.Minute)
	var out bytes.Buffer
	if err := publish(ctx, c, "publisher-test", 4, &out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var id, currency string
		var total int64
		if _, err := fmt.Sscanf(string(line), "created %s total %d %s", &id, &total, &currency); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 4 {
		t.Fatalf("printed %d orders, want 4:\n%s", len(ids), out.String())
	}
	for _, id := range ids {
		res, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
		if err != nil || res.GetOrder().GetCustomerId() != "publisher-test" {
			t.Fatalf("order %s: %v, %v", id, res, err)
		}
	}
}
