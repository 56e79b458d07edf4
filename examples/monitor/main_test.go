package main

import (
	"context"
	"fmt"
	"path/filepath"
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

// The monitor prints every event once: across a restart of its node (the
// client resumes the watch) and across its own restart (from its state
// file).
func TestMonitorSeesEveryEventOnceAcrossRestarts(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{})
	c, err := dial(n.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testsupport.Context(t, 2*time.Minute)
	create := func() string {
		res, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "monitor-test", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "S", Quantity: 1, UnitPriceMinor: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d %s ORDER_STATUS_CREATED monitor-test", res.GetOrder().GetRevision(), res.GetOrder().GetOrderId())
	}
	state := filepath.Join(t.TempDir(), "monitor.pos")
	run := func(out *testsupport.Lines) (stop func()) {
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- monitor(mctx, c, state, out) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("monitor: %v", err)
			}
		}
	}
	events := func(lines []string) []string {
		var evs []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "caught up") {
				evs = append(evs, l)
			}
		}
		return evs
	}
	want := []string{create(), create()} // stored before the monitor starts: replayed

	out := testsupport.NewLines()
	stop := run(out)
	out.WaitFor(t, 20*time.Second, "the replay", func(l []string) bool { return len(l) >= 3 })
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	want = append(want, create(), create())
	out.WaitFor(t, 30*time.Second, "the events after the node's restart", func(l []string) bool { return len(events(l)) >= 4 })
	stop()
	if got := events(out.All()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("first run printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines := out.All(); lines[2] != "caught up: live from here" {
		t.Fatalf("the replay of two events was not followed by caught up: %q", lines)
	}

	// Started again, it goes on after the last event it printed.
	more := []string{create()}
	again := testsupport.NewLines()
	stop = run(again)
	again.WaitFor(t, 20*time.Second, "the event stored while it was stopped", func(l []string) bool { return len(events(l)) >= 1 })
	more = append(more, create())
	again.WaitFor(t, 20*time.Second, "a live event", func(l []string) bool { return len(events(l)) >= 2 })
	stop()
	if got := events(again.All()); strings.Join(got, "\n") != strings.Join(more, "\n") {
		t.Fatalf("second run printed:\n%s\nwant only what came after the first:\n%s", strings.Join(got, "\n"), strings.Join(more, "\n"))
	}
}
