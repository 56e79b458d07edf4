package eventstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// lostAckStore is a store on a publisher without a timer per publish,
// and a subject whose publishes are delivered but never answered, as a
// stream leader that dies mid-write leaves them.
func lostAckStore(t *testing.T, opTimeout time.Duration, opts ...jetstream.JetStreamOpt) (*Store, jetstream.JetStream, string) {
	t.Helper()
	js := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly), opts...)
	store, err := New(js, Options{OpTimeout: opTimeout, Logger: testsupport.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(testsupport.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sub, err := js.Conn().SubscribeSync("unanswered.>") // takes the publishes, never replies
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return store, js, "unanswered.x"
}

// publishUnanswered publishes to subject and gives up on the ack after a
// moment, as a caller whose deadline ends does.
func publishUnanswered(t *testing.T, s *Store, subject string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.publish(ctx, &nats.Msg{Subject: subject, Header: nats.Header{}})
	return err
}

func createOne(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Create(testsupport.Context(t, 10*time.Second), NewOrder{
		CustomerID: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
	}); err != nil {
		t.Fatalf("a create after the lost acks: %v", err)
	}
}

// Acks that never come do not hold the publisher's slots forever: once an
// abandoned publish has gone unanswered for longer than the store's
// timeout, the next abandoned one resets the publisher, and publishing
// goes on.
func TestLostAcksAreFreedWhenAnotherPublishIsAbandoned(t *testing.T) {
	const opTimeout = 300 * time.Millisecond
	s, js, subject := lostAckStore(t, opTimeout)
	for range 3 {
		if err := publishUnanswered(t, s, subject); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("publish without an answer: %v, want the caller's deadline", err)
		}
	}
	if n := js.PublishAsyncPending(); n != 3 {
		t.Fatalf("%d publishes pending, want the 3 unanswered ones", n)
	}
	time.Sleep(opTimeout + 50*time.Millisecond)
	_ = publishUnanswered(t, s, subject) // finds the others lost
	if n := js.PublishAsyncPending(); n != 0 {
		t.Fatalf("%d publishes still pending after the reset, want 0", n)
	}
	createOne(t, s)
}

// A publisher full of lost acks recovers too: the publish that finds it
// full resets it once the lost ones are older than the store's timeout.
func TestLostAcksAreFreedWhenThePublisherIsFull(t *testing.T) {
	const opTimeout = 300 * time.Millisecond
	s, js, subject := lostAckStore(t, opTimeout, jetstream.WithPublishAsyncMaxPending(2))
	for range 2 {
		_ = publishUnanswered(t, s, subject)
	}
	time.Sleep(opTimeout + 50*time.Millisecond)
	_, err := s.sendAsync(&nats.Msg{Subject: subject, Header: nats.Header{}})
	if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		t.Fatalf("publish to a full publisher: %v, want %v", err, jetstream.ErrTooManyStalledMsgs)
	}
	if n := js.PublishAsyncPending(); n != 0 {
		t.Fatalf("%d publishes still pending after the reset, want 0", n)
	}
	createOne(t, s)
}
