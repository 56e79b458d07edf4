package consumers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// The review worker approves orders within the limit (the limit itself
// included) and rejects the rest; a created event delivered again after its
// order was already reviewed (an ack lost in a crash) is answered as a
// duplicate, and one whose order changed first (cancelled) is left alone;
// both are acked without a second transition.
func TestReviewerDecidesOnceAndAcks(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	create := func(id string, price int64) {
		t.Helper()
		if _, err := e.store.Create(ctx, eventstore.NewOrder{
			OrderID: id, CustomerID: "c", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: price}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	create("within", 100)
	create("at-the-limit", 500)
	create("over", 900)
	create("reviewed-before-crash", 100)
	create("cancelled-first", 100)
	// A previous reviewer stored its decision but died before acking.
	if _, err := e.store.Transition(ctx, eventstore.Change{OrderID: "reviewed-before-crash", RequestID: ReviewConsumer, To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Transition(ctx, eventstore.Change{OrderID: "cancelled-first", To: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED}); err != nil {
		t.Fatal(err)
	}

	reviewer, err := NewReviewer(e.store, ReviewOptions{LimitMinor: 500}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reviewer.Run(runCtx)
	}()
	defer func() { stop(); <-done }()

	want := map[string]ordersv1.OrderStatus{
		"within":                ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		"at-the-limit":          ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		"over":                  ordersv1.OrderStatus_ORDER_STATUS_REJECTED,
		"reviewed-before-crash": ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		"cancelled-first":       ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cons, err := e.js.Consumer(ctx, eventstore.StreamName, ReviewConsumer)
		if err == nil {
			info, err := cons.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream > 0 {
				break // every created event acked
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the review worker did not ack every created event")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for id, status := range want {
		order, err := e.store.Get(ctx, id)
		if err != nil || order.GetStatus() != status {
			t.Errorf("%s: %v, %v; want %v", id, order.GetStatus(), err, status)
		}
		events := 0
		if err := e.store.History(ctx, id, func(*ordersv1.OrderEvent) error { events++; return nil }, nil); err != nil {
			t.Fatal(err)
		}
		if events != 2 {
			t.Errorf("%s has %d events, want 2 (created and one decision)", id, events)
		}
	}
}

// The reviewer's redelivered decision is a duplicate, not a conflict: the
// change it makes for a created event it already decided is answered with
// the stored result, whatever node makes it.
func TestReviewersRepeatedDecisionIsADuplicate(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, eventstore.NewOrder{
		OrderID: "o", CustomerID: "c", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	created, err := e.store.Get(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	change := eventstore.Change{OrderID: "o", RequestID: ReviewConsumer, ExpectedRevision: created.GetRevision(), To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}
	first, err := e.store.Transition(ctx, change)
	if err != nil || first.Duplicate {
		t.Fatalf("first review: %+v, %v", first, err)
	}
	again, err := e.store.Transition(ctx, change)
	if err != nil || !again.Duplicate || again.Order.GetRevision() != first.Order.GetRevision() {
		t.Fatalf("the review of a redelivery: %+v, %v; want a duplicate of revision %d", again, err, first.Order.GetRevision())
	}
}

// NewReviewer refuses options it cannot work with, wrapping
// ErrInvalidOption, and fills in the documented defaults.
func TestNewReviewerValidatesOptions(t *testing.T) {
	t.Parallel()
	log := testsupport.Logger()
	for _, c := range []struct {
		name string
		opts ReviewOptions
	}{
		{"a negative limit", ReviewOptions{LimitMinor: -1}},
		{"an ack wait shorter than a second", ReviewOptions{AckWait: 10 * time.Millisecond}},
		{"a negative ack wait", ReviewOptions{AckWait: -time.Second}},
		{"a negative concurrency", ReviewOptions{Concurrency: -1}},
		{"a concurrency above the maximum", ReviewOptions{Concurrency: MaxReviewConcurrency + 1}},
		{"negative max deliveries", ReviewOptions{MaxDeliveries: -1}},
	} {
		if r, err := NewReviewer(nil, c.opts, log); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: NewReviewer = %v, %v; want ErrInvalidOption", c.name, r, err)
		}
	}
	r, err := NewReviewer(nil, ReviewOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if r.opts.AckWait != DefaultAckWait || r.opts.LimitMinor != 0 || r.opts.Concurrency != DefaultReviewConcurrency || r.opts.MaxDeliveries != reviewMaxDeliveries {
		t.Errorf("defaults: %+v, want AckWait %s", r.opts, DefaultAckWait)
	}
}

// failingStore is a real store whose reviews all fail as if JetStream
// did not answer: the reviewer's own failures.
type failingStore struct{ *eventstore.Store }

func (failingStore) TransitionFrom(context.Context, *ordersv1.Order, eventstore.Change) (*eventstore.PendingTransition, error) {
	return nil, fmt.Errorf("%w: injected", eventstore.ErrUnavailable)
}

// A created event the reviewer fails on at each of its max deliveries
// becomes a dead letter of order-review, recorded by JetStream.
func TestReviewFailuresBecomeDeadLetters(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ctx := context.Background()
	e.createOrders(t, 1)
	startReviewer(t, failingStore{e.store}, ReviewOptions{MaxDeliveries: 2})
	waitFor(t, 20*time.Second, "a dead letter of order-review", func() bool {
		letters, _, err := e.letters.List(ctx, ReviewConsumer, 0, 10)
		return err == nil && len(letters) == 1
	})
	letters, _, err := e.letters.List(ctx, ReviewConsumer, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if l := letters[0]; l.Reason != deadletters.MaxDeliveries || l.Deliveries != 2 || l.Event.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CREATED {
		t.Errorf("dead letter %+v", l)
	}
}
