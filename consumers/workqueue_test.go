package consumers

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

type testEnv struct {
	nc    *nats.Conn
	js    jetstream.JetStream // to look at the stream and its consumers directly
	store *eventstore.Store
	log   *slog.Logger
}

func newTestEnv(t *testing.T) testEnv {
	t.Helper()
	log := testsupport.Logger()
	nc := testsupport.Connect(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return testEnv{nc: nc, js: js, store: eventstore.New(js, eventstore.Options{Logger: log}), log: log}
}

func (e testEnv) createOrders(t *testing.T, count int) {
	t.Helper()
	for range count {
		if _, err := e.store.Create(context.Background(), eventstore.NewOrder{
			CustomerID: "c", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// Events fetched for a client whose stream broke before they were sent are
// released at once, not after their ack wait: the next client gets them
// right away, and only the events actually sent wait for their ack wait.
func TestFetchedButUnsentEventsAreReleasedAtOnce(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 20)
	wq := NewWorkQueues(e.store, e.nc, RandomAckTokens(), e.log, nil)
	spec := ConsumeSpec{Consumer: "q", MaxInFlight: 20, Heartbeat: time.Minute, Settings: ConsumerSettings{AckWait: time.Minute}}

	broken := errors.New("client gone")
	sent := 0
	err := wq.Consume(context.Background(), spec, func(d Delivery) error {
		if sent == 3 {
			return broken // the 4th send fails: 3 were sent, 17 fetched but not sent
		}
		sent++
		return nil
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Consume = %v, want the send error", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := 0
	start := time.Now()
	_ = wq.Consume(ctx, spec, func(d Delivery) error {
		if d.Heartbeat {
			return nil
		}
		got++
		if got == 17 {
			cancel()
		}
		return nil
	})
	if got != 17 {
		t.Fatalf("the next client got %d events, want the 17 that were never sent", got)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the unsent events took %v to come back (ack wait is a minute)", took)
	}
}
