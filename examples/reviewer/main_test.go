package main

import (
	"context"
	"strings"
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

// On a node without its review worker (--review=false) the reviewer
// decides every created order: approves those within the limit, rejects
// the others, and leaves alone one cancelled before its review.
func TestReviewerTakesOverTheReview(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{Review: false})
	c, err := dial(n.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testsupport.Context(t, time.Minute)
	create := func(price int64) *ordersv1.Order {
		res, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "reviewer-test", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "S", Quantity: 1, UnitPriceMinor: price}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetOrder()
	}
	small, large, cancelled := create(500), create(500_000), create(700)
	if _, err := c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{OrderId: cancelled.GetOrderId()}); err != nil {
		t.Fatal(err)
	}

	out := testsupport.NewLines()
	reviewCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- review(reviewCtx, c, 100_000, out) }()
	out.WaitFor(t, 30*time.Second, "three orders reviewed", func(lines []string) bool { return len(lines) >= 3 })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("review: %v", err)
	}
	want := map[string]string{
		small.GetOrderId():     "approved " + small.GetOrderId(),
		large.GetOrderId():     "rejected " + large.GetOrderId(),
		cancelled.GetOrderId(): "skipped " + cancelled.GetOrderId() + ": it changed since it was created",
	}
	lines := out.All()
	if len(lines) != 3 {
		t.Fatalf("reviewer printed %q, want three lines", lines)
	}
	for _, line := range lines {
		found := false
		for _, w := range want {
			found = found || line == w
		}
		if !found {
			t.Errorf("unexpected line %q; want each of %v once", line, want)
		}
	}
	for id, status := range map[string]ordersv1.OrderStatus{
		small.GetOrderId():     ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		large.GetOrderId():     ordersv1.OrderStatus_ORDER_STATUS_REJECTED,
		cancelled.GetOrderId(): ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
	} {
		res, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
		if err != nil || res.GetOrder().GetStatus() != status {
			t.Errorf("order %s: %v, %v; want %s", id, res.GetOrder().GetStatus(), err, status)
		}
	}
	// Every created event was acked: a second reviewer on the queue finds nothing.
	again := testsupport.NewLines()
	quiet, stopQuiet := context.WithTimeout(ctx, 2*time.Second)
	defer stopQuiet()
	if err := review(quiet, c, 100_000, again); err != nil {
		t.Fatal(err)
	}
	if lines := again.All(); len(lines) != 0 {
		t.Fatalf("a second reviewer got %q: the first did not ack", strings.Join(lines, "; "))
	}
}
