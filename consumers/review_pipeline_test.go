package consumers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// hookedStore is a real store with a hook run before each decision is
// published: it delays a reviewer or changes the order under it. The
// decision itself still goes to JetStream.
type hookedStore struct {
	*eventstore.Store
	before func(known *ordersv1.Order)
}

func (h hookedStore) TransitionFrom(ctx context.Context, known *ordersv1.Order, c eventstore.Change) (*eventstore.PendingTransition, error) {
	if h.before != nil {
		h.before(known)
	}
	return h.Store.TransitionFrom(ctx, known, c)
}

// startReviewer runs a reviewer until the returned stop is called (or the
// test ends); stop returns once Run has.
func startReviewer(t *testing.T, store ReviewStore, opts ReviewOptions) (stop func()) {
	t.Helper()
	return startHeldReviewer(t, store, opts, nil)
}

// startHeldReviewer is startReviewer for a reviewer that runs beforeAck
// between storing each decision and acking its event.
func startHeldReviewer(t *testing.T, store ReviewStore, opts ReviewOptions, beforeAck func()) (stop func()) {
	t.Helper()
	r, err := NewReviewer(store, opts, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	r.beforeAck = beforeAck
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// testCustomer is the customer of the orders createNamed stores.
const testCustomer = "c"

// eventSubject is the subject of the event of status of the order id
// that createNamed stored.
func eventSubject(t *testing.T, status ordersv1.OrderStatus, id string) string {
	t.Helper()
	subject, err := eventstore.EventSubject(status, eventstore.OrderKey{CustomerID: testCustomer, OrderID: id})
	if err != nil {
		t.Fatal(err)
	}
	return subject
}

// createNamed stores count orders named prefix-<i> and returns their ids.
func (e testEnv) createNamed(t *testing.T, prefix string, count int) []string {
	t.Helper()
	ids := make([]string, count)
	for i := range ids {
		ids[i] = prefix + "-" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i)
		if _, err := e.store.Create(context.Background(), eventstore.NewOrder{
			OrderID: ids[i], CustomerID: testCustomer, CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// waitReviewAcked waits until the review consumer has nothing pending and
// nothing unacknowledged.
func (e testEnv) waitReviewAcked(t *testing.T, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, d, "every created event acked by the review worker", func() bool {
		cons, err := e.js.Consumer(ctx, eventstore.StreamName, ReviewConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream > 0
	})
}

// eventCounts returns, per event subject ORDERS.<event>.<customer>.<id>, how many
// events the stream holds.
func (e testEnv) eventCounts(t *testing.T) map[string]uint64 {
	t.Helper()
	stream, err := e.js.Stream(context.Background(), eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(eventstore.StreamSubjects))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

// checkOneReviewEach fails the test unless every order in ids has exactly
// its created event and one approved event.
func (e testEnv) checkOneReviewEach(t *testing.T, ids []string) {
	t.Helper()
	counts := e.eventCounts(t)
	bad := 0
	for _, id := range ids {
		created := counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_CREATED, id)]
		approved := counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_APPROVED, id)]
		others := counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_REJECTED, id)] +
			counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, id)]
		if created != 1 || approved != 1 || others != 0 {
			if bad++; bad <= 5 {
				t.Errorf("%s: %d created, %d approved, %d other events; want 1, 1, 0", id, created, approved, others)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more orders", bad-5)
	}
}

// approvedCount is how many approved events the stream holds.
func (e testEnv) approvedCount(t *testing.T) int {
	t.Helper()
	filters, err := eventstore.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_APPROVED}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.js.Stream(context.Background(), eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(filters[0]))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, count := range info.State.Subjects {
		n += int(count)
	}
	return n
}

// Two reviewers share the consumer, and every created event is delivered
// to both: the first holds its batch past the ack wait, so JetStream gives
// the same events to the second, which reviews them; the first then
// publishes its own decisions from the created state, finds the orders
// moved on, and recognises its decisions as duplicates. Each order gets
// exactly one review, and every event is acked.
func TestConcurrentRedeliveriesReviewOnce(t *testing.T) {
	e := newTestEnv(t)
	ids := e.createNamed(t, "o", 50)
	var slowCalls atomic.Int64
	slow := hookedStore{Store: e.store, before: func(*ordersv1.Order) {
		if slowCalls.Add(1) == 1 {
			time.Sleep(2500 * time.Millisecond) // past the ack wait: everything held is redelivered
		}
	}}
	opts := ReviewOptions{LimitMinor: 100, AckWait: time.Second}
	stopSlow := startReviewer(t, slow, opts)
	waitFor(t, 5*time.Second, "the first reviewer holding every created event", func() bool {
		cons, err := e.js.Consumer(context.Background(), eventstore.StreamName, ReviewConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == len(ids)
	})
	startReviewer(t, e.store, opts)
	// The first reviewer decides every event it held, each already
	// redelivered to (and reviewed by) the second; stopping it waits for
	// those decisions to be settled.
	waitFor(t, 20*time.Second, "the first reviewer deciding every event it held", func() bool { return slowCalls.Load() >= int64(len(ids)) })
	stopSlow()
	e.waitReviewAcked(t, 20*time.Second)
	e.checkOneReviewEach(t, ids)
}

// A reviewer stores its decisions but does not ack them (a node that hangs
// or dies between the two); after the ack wait JetStream delivers the same
// events to a second reviewer, whose decisions, built from the created
// state, fail their expected-sequence check: it must recognise each as
// already made (a duplicate), store nothing more, and ack.
func TestRedeliveryOfAStoredDecisionIsADuplicate(t *testing.T) {
	e := newTestEnv(t)
	ids := e.createNamed(t, "o", 50)
	opts := ReviewOptions{LimitMinor: 100, AckWait: time.Second}
	release := make(chan struct{})
	var held atomic.Int64
	startHeldReviewer(t, e.store, opts, func() { held.Add(1); <-release })
	t.Cleanup(func() { close(release) }) // before the reviewer is stopped: cleanups run last first
	waitFor(t, 10*time.Second, "every decision stored by the first reviewer", func() bool { return held.Load() == int64(len(ids)) })
	e.checkOneReviewEach(t, ids)
	startReviewer(t, e.store, opts)
	e.waitReviewAcked(t, 20*time.Second)
	e.checkOneReviewEach(t, ids)
}

// An order cancelled after its created event was fetched, before the
// decision is published: the reviewer's publish fails its expected-sequence
// check, the reviewer skips the order and acks its event, and the order
// stays cancelled.
func TestOrderCancelledDuringReviewIsLeftAlone(t *testing.T) {
	e := newTestEnv(t)
	keep := e.createNamed(t, "keep", 10)
	cancel := e.createNamed(t, "cancel", 10)
	hooked := hookedStore{Store: e.store, before: func(known *ordersv1.Order) {
		if strings.HasPrefix(known.GetOrderId(), "cancel-") {
			// Cancelled once; a redelivery finds it cancelled already.
			if _, err := e.store.Transition(context.Background(), eventstore.Change{OrderID: known.GetOrderId(), To: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED}); err != nil && !errors.Is(err, eventstore.ErrIllegalTransition) {
				t.Errorf("cancel %s: %v", known.GetOrderId(), err)
			}
		}
	}}
	startReviewer(t, hooked, ReviewOptions{LimitMinor: 100})
	e.waitReviewAcked(t, 10*time.Second)
	e.checkOneReviewEach(t, keep)
	counts := e.eventCounts(t)
	for _, id := range cancel {
		order, err := e.store.Get(context.Background(), id)
		if err != nil || order.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Errorf("%s: %v, %v; want CANCELLED", id, order.GetStatus(), err)
		}
		if n := counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_APPROVED, id)] +
			counts[eventSubject(t, ordersv1.OrderStatus_ORDER_STATUS_REJECTED, id)]; n != 0 {
			t.Errorf("%s: %d review events after its cancellation, want 0", id, n)
		}
	}
}

// A reviewer stopped mid-batch (its context ends with reviews in flight
// and fetched events not yet started), then another takes over: every
// order ends with exactly one review, none lost, none doubled.
func TestReviewerStoppedMidBatchLosesNothing(t *testing.T) {
	e := newTestEnv(t)
	ids := e.createNamed(t, "o", 300)
	slow := hookedStore{Store: e.store, before: func(*ordersv1.Order) { time.Sleep(5 * time.Millisecond) }}
	stop := startReviewer(t, slow, ReviewOptions{LimitMinor: 100, AckWait: time.Second, Concurrency: 4})
	waitFor(t, 10*time.Second, "some orders reviewed", func() bool { return e.approvedCount(t) >= 20 })
	stop()
	if n := e.approvedCount(t); n >= len(ids) {
		t.Fatalf("the first reviewer reviewed all %d orders before it was stopped; the test needs it stopped mid-way", n)
	}
	startReviewer(t, e.store, ReviewOptions{LimitMinor: 100, AckWait: time.Second})
	e.waitReviewAcked(t, 20*time.Second)
	e.checkOneReviewEach(t, ids)
}

// A reviewer whose NATS connection closes mid-run, with decisions in
// flight whose answers never come: another reviewer gets the events after
// the ack wait and, whether or not the first one's decisions were stored,
// every order ends with exactly one review.
func TestReviewerConnectionLostMidBatchLosesNothing(t *testing.T) {
	e := newTestEnv(t)
	ids := e.createNamed(t, "o", 300)
	nc := testsupport.Connect(t, e.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.New(js, eventstore.Options{Logger: e.log, OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	slow := hookedStore{Store: store, before: func(*ordersv1.Order) { time.Sleep(time.Millisecond) }}
	stop := startReviewer(t, slow, ReviewOptions{LimitMinor: 100, AckWait: time.Second, Concurrency: 64})
	waitFor(t, 10*time.Second, "some orders reviewed", func() bool { return e.approvedCount(t) >= 20 })
	nc.Close()
	if n := e.approvedCount(t); n >= len(ids) {
		t.Fatalf("the first reviewer reviewed all %d orders before its connection closed; the test needs it cut off mid-way", n)
	}
	startReviewer(t, e.store, ReviewOptions{LimitMinor: 100, AckWait: time.Second})
	e.waitReviewAcked(t, 20*time.Second)
	e.checkOneReviewEach(t, ids)
	stop()
}

// A decision JetStream refuses (here the stream is full) is not acked:
// its created event stays with the consumer and is reviewed once the
// stream has room again. An ack sent before the decision's answer would
// lose these orders.
func TestRefusedDecisionIsNotAcked(t *testing.T) {
	e := newTestEnv(t)
	ids := e.createNamed(t, "o", 20)
	ctx := context.Background()
	stream, err := e.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	full := cfg
	full.MaxMsgs, full.Discard = int64(len(ids)), jetstream.DiscardNew
	if _, err := e.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	startReviewer(t, e.store, ReviewOptions{LimitMinor: 100, AckWait: time.Second})
	waitFor(t, 10*time.Second, "every created event delivered to the reviewer", func() bool {
		cons, err := e.js.Consumer(ctx, eventstore.StreamName, ReviewConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.Delivered.Stream == uint64(len(ids))
	})
	time.Sleep(500 * time.Millisecond) // decisions refused meanwhile
	cons, err := e.js.Consumer(ctx, eventstore.StreamName, ReviewConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 0 || info.NumAckPending != len(ids) {
		t.Fatalf("with every decision refused: ack floor %d, %d unacked; want 0 and %d", info.AckFloor.Stream, info.NumAckPending, len(ids))
	}
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	e.waitReviewAcked(t, 20*time.Second)
	e.checkOneReviewEach(t, ids)
}
