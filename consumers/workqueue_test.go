package consumers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

type testEnv struct {
	ns      *natsserver.Server
	nc      *nats.Conn
	js      jetstream.JetStream // to look at the stream and its consumers directly
	store   *eventstore.Store
	letters *deadletters.Store // the store's dead letters
	log     *slog.Logger
}

func newTestEnv(t *testing.T) testEnv {
	t.Helper()
	log := testsupport.Logger()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	nc := testsupport.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.New(js, eventstore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	letters, err := deadletters.New(store, js, deadletters.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return testEnv{ns: ns, nc: nc, js: js, store: store, letters: letters, log: log}
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

// waitFor fails the test unless cond holds within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The fetch loop never has more events out than the client's credit
// (max_in_flight), and an ack frees credit at once, long before the ack
// wait: one applied by the Acker on this connection, and one published by
// another connection (another ordersd node).
func TestFetchLoopStaysWithinCreditAndAcksFreeIt(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 10)
	tokens := RandomAckTokens()
	wq := NewWorkQueues(e.store, e.letters, e.nc, tokens, e.log, nil, WorkQueueOptions{})
	const credit = 3
	spec := ConsumeSpec{Consumer: "q", MaxInFlight: credit, Heartbeat: time.Minute, Settings: ConsumerSettings{AckWait: time.Minute}}

	var sent, acked atomic.Int64
	deliveries := make(chan Delivery, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- wq.Consume(ctx, spec, func(d Delivery) error {
			if d.Heartbeat {
				return nil
			}
			if out := sent.Add(1) - acked.Load(); out > credit {
				t.Errorf("event %d sent with %d unacknowledged, credit is %d", d.Event.GetSequence(), out-1, credit)
			}
			deliveries <- d
			return nil
		})
	}()
	next := func() Delivery {
		t.Helper()
		select {
		case d := <-deliveries:
			return d
		case err := <-done:
			t.Fatalf("Consume ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no delivery within 10s after %d (ack wait is a minute: credit was not freed)", sent.Load())
		}
		return Delivery{}
	}
	var held []Delivery
	for range credit {
		held = append(held, next())
	}

	// Acked here, with JetStream's confirmation.
	acked.Add(1)
	ack, err := tokens.Verify(held[0].AckToken)
	if err != nil {
		t.Fatal(err)
	}
	res := NewAcker(e.nc, 5*time.Second).Apply(ctx, []Settle{{Ack: ack, Action: ActionAck}})
	if !res[0].Confirmed {
		t.Fatalf("ack not confirmed: %v", res[0].Err)
	}
	held = append(held, next())

	// Acked by another connection: a plain JetStream ack, as any node sends.
	other := testsupport.Connect(t, e.ns)
	ack, err = tokens.Verify(held[1].AckToken)
	if err != nil {
		t.Fatal(err)
	}
	acked.Add(1)
	if err := other.Publish(ack.Subject, []byte(ackBody)); err != nil {
		t.Fatal(err)
	}
	held = append(held, next())
	if got := sent.Load(); got != credit+2 {
		t.Fatalf("%d events sent after two acks, want %d", got, credit+2)
	}
	cancel()
	<-done
}

// Events fetched for a client whose stream broke before they were sent are
// released at once, not after their ack wait: the next client gets them
// right away, and only the events actually sent wait for their ack wait.
func TestFetchedButUnsentEventsAreReleasedAtOnce(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 20)
	wq := NewWorkQueues(e.store, e.letters, e.nc, RandomAckTokens(), e.log, nil, WorkQueueOptions{})
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
