package consumers

import (
	"errors"
	"fmt"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// createMany stores count created events, published as a writer would
// (the event codec, on the event's subject) but without waiting for each
// ack, to fill the stream fast (waiting every 500, as nats.go refuses
// publishes past its limit of acks pending once a short stall has passed
// on a loaded machine); their sequences are consecutive.
func (e testEnv) createMany(t *testing.T, count int) {
	t.Helper()
	ctx := testsupport.Context(t, time.Minute)
	for i := range count {
		msg, err := eventstore.EncodeEvent(&ordersv1.Order{
			OrderId: fmt.Sprintf("many-%d", i), CustomerId: "c", Status: ordersv1.OrderStatus_ORDER_STATUS_CREATED, CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}, TotalMinor: 1,
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
		if (i+1)%500 == 0 || i == count-1 { // within the client's limit of acks pending
			select {
			case <-e.js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("the events were not all stored within a minute")
			}
		}
	}
}

// Watchers that fall behind together catch up together: from the
// monitor's recent events, with no read of the stream and one encode per
// event for all of them, then they join the live fan-out again. Each gets
// every event once, in order.
func TestLaggingWatchersShareTheRecentEvents(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	store := &countingReader{Store: e.store}
	w := NewWatcher(monitor, store, NewResumePositions(RandomAckTokens()))
	if err := e.store.Ready(testsupport.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gate := newFirstEventGate()
	const lagging = 20
	runs := make([]*watchRun, lagging)
	for i := range runs {
		runs[i] = startWatchSending(t, w, WatchSpec{}, gate.holdFirst(), true)
	}
	t.Cleanup(gate.open)
	for _, r := range runs {
		r.expectCaughtUp(t)
	}

	n := uint64(4 * liveBuffer)
	e.createMany(t, int(n))
	waitFor(t, 10*time.Second, "every watcher leaves the fan-out", func() bool { return monitor.Watchers() == 0 })
	gate.open()
	for _, r := range runs {
		r.expectSequences(t, 1, n)
	}
	waitFor(t, 10*time.Second, "the watchers join the fan-out again", func() bool { return monitor.Watchers() == lagging })
	if reads := store.reads.Load(); reads != 0 {
		t.Errorf("the lagging watchers read the stream %d times; they should share the recent events", reads)
	}
	if encoded := monitor.responsesEncoded.Load(); encoded != n {
		t.Errorf("%d responses encoded for %d events sent to %d watchers; want one per event", encoded, n, lagging)
	}
	e.createOrders(t, 2)
	for _, r := range runs {
		r.expectSequences(t, n+1, n+2)
	}
}

// A watcher that falls further behind the live events than the monitor
// keeps is ended with a TooSlowError that says where to resume, while the
// others get every event promptly and the monitor holds no more than its
// recent events; resumed from there, it misses nothing and sees nothing
// twice.
func TestWatcherTooFarBehindIsToldWhereToResume(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	w := NewWatcher(monitor, e.store, NewResumePositions(RandomAckTokens()))
	if err := e.store.Ready(testsupport.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gate := newFirstEventGate()
	slow := startWatch(t, w, WatchSpec{}, gate.holdFirst())
	t.Cleanup(gate.open)
	fast := startWatch(t, w, WatchSpec{}, nil)
	slow.expectCaughtUp(t)
	fast.expectCaughtUp(t)

	total := uint64(RecentCapacity + 2*liveBuffer)
	e.createMany(t, int(total))
	fast.expectSequences(t, 1, total)
	if held := monitor.RecentHeld(); held != RecentCapacity {
		t.Errorf("the monitor holds %d recent events after %d, want its capacity %d", held, total, RecentCapacity)
	}
	gate.open()

	var last uint64
	take := func(u WatchUpdate) {
		if u.Event == nil {
			return
		}
		if u.Event.GetSequence() != last+1 {
			t.Fatalf("the slow watcher got sequence %d after %d", u.Event.GetSequence(), last)
		}
		last = u.Event.GetSequence()
	}
	var ended error
	for ended == nil {
		select {
		case u := <-slow.updates:
			take(u)
		case ended = <-slow.done:
			slow.done <- ended // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatalf("the slow watcher was not ended; it got up to sequence %d", last)
		}
	}
	for len(slow.updates) > 0 { // sent before it ended
		take(<-slow.updates)
	}
	var tooSlow *TooSlowError
	if !errors.As(ended, &tooSlow) {
		t.Fatalf("the slow watcher ended with %v, want a TooSlowError", ended)
	}
	if last == 0 || last >= total-RecentCapacity || tooSlow.Resume != last+1 {
		t.Fatalf("ended after sequence %d with resume at %d; want resume at the next one, and an end before the recent events", last, tooSlow.Resume)
	}

	resumed := startWatch(t, w, WatchSpec{StartSequence: tooSlow.Resume}, nil)
	resumed.expectSequences(t, tooSlow.Resume, total)
	resumed.expectCaughtUp(t)
	e.createOrders(t, 1)
	resumed.expectSequences(t, total+1, total+1)
	fast.expectSequences(t, total+1, total+1)
}

// A watcher that catches up from the recent events also gets the notices
// of the messages the fan-out skipped meanwhile (not order events), in
// their place: a gap and a foreign message stay told apart however far
// behind it was.
func TestLaggingWatcherGetsSkipNoticesFromTheRecentEvents(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	store := &countingReader{Store: e.store}
	w := NewWatcher(monitor, store, NewResumePositions(RandomAckTokens()))
	if err := e.store.Ready(testsupport.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gate := newFirstEventGate()
	lagging := startWatch(t, w, WatchSpec{}, gate.holdFirst())
	t.Cleanup(gate.open)
	lagging.expectCaughtUp(t)

	n := uint64(2 * liveBuffer)
	e.createMany(t, int(n))
	ctx := testsupport.Context(t, 10*time.Second)
	foreign, err := e.js.Publish(ctx, "ORDERS.approved.c.foreign-1", []byte(`{"id":"foreign-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	e.createMany(t, int(n))
	waitFor(t, 10*time.Second, "the watcher leaves the fan-out", func() bool { return monitor.Watchers() == 0 })
	gate.open()
	lagging.expectSequences(t, 1, n)
	if u := lagging.next(t); u.Skipped == nil || u.Skipped.Sequence != foreign.Sequence {
		t.Fatalf("got %+v after the events before it, want the notice that sequence %d was skipped", u, foreign.Sequence)
	}
	lagging.expectSequences(t, foreign.Sequence+1, 2*n+1)
	if reads := store.reads.Load(); reads != 0 {
		t.Errorf("the lagging watcher read the stream %d times; it should catch up from the recent events", reads)
	}
}
