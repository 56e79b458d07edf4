package consumers

import (
	"context"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// countingReader is the real store, counting its reads and the messages
// JetStream delivers to them.
type countingReader struct {
	*eventstore.Store
	reads     atomic.Int64
	delivered atomic.Int64
}

func (r *countingReader) Read(ctx context.Context, req eventstore.ReadRequest, send func(*ordersv1.OrderEvent) error) (uint64, error) {
	r.reads.Add(1)
	return r.Store.Read(ctx, req, func(ev *ordersv1.OrderEvent) error {
		r.delivered.Add(1)
		return send(ev)
	})
}

func (e testEnv) createFor(t *testing.T, customer string, count int) {
	t.Helper()
	for range count {
		if _, err := e.store.Create(context.Background(), eventstore.NewOrder{
			CustomerID: customer, CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// A replay for one customer reads only that customer's events from the
// stream: JetStream selects them by subject, and delivers no other.
func TestWatchReplayOfOneCustomerReadsOnlyItsEvents(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	reader := &countingReader{Store: e.store}
	w := NewWatcher(monitor, reader, NewResumePositions(RandomAckTokens()))
	e.createFor(t, "others", 30)
	e.createFor(t, "alice", 4)
	e.createFor(t, "others", 30)
	run := startWatch(t, w, WatchSpec{ReplayAll: true, CustomerID: "alice"}, nil)
	for range 4 {
		if u := run.next(t); u.Event.GetOrder().GetCustomerId() != "alice" {
			t.Fatalf("got %+v, want an event of alice", u)
		}
	}
	run.expectCaughtUp(t)
	if got := reader.delivered.Load(); got != 4 {
		t.Fatalf("JetStream delivered %d messages to the replay, want alice's 4 only", got)
	}
}
