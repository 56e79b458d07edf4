package consumers

import (
	"context"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// watchRun is one Watch running in the background, its updates on a channel.
type watchRun struct {
	updates chan WatchUpdate
	done    chan error
	cancel  context.CancelFunc
}

func startWatch(t *testing.T, w *Watcher, spec WatchSpec, onEvent func(*ordersv1.OrderEvent)) *watchRun {
	t.Helper()
	return startWatchSending(t, w, spec, onEvent, false)
}

// startWatchSending is startWatch; with encode, each update is encoded as
// the server sends it (a live event's shared encoding) before onEvent.
func startWatchSending(t *testing.T, w *Watcher, spec WatchSpec, onEvent func(*ordersv1.OrderEvent), encode bool) *watchRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &watchRun{updates: make(chan WatchUpdate, 1000), done: make(chan error, 1), cancel: cancel}
	if spec.Heartbeat == 0 {
		spec.Heartbeat = time.Minute
	}
	go func() {
		r.done <- w.Watch(ctx, spec, func(u WatchUpdate) error {
			if encode {
				if _, err := u.EncodedResponse(); err != nil {
					return err
				}
			}
			if u.Event != nil && onEvent != nil {
				onEvent(u.Event)
			}
			select { // a test that stopped reading must not hold its watch open
			case r.updates <- u:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// next returns the next event or caught-up signal (heartbeats skipped).
func (r *watchRun) next(t *testing.T) WatchUpdate {
	t.Helper()
	for {
		select {
		case u := <-r.updates:
			if !u.Heartbeat {
				return u
			}
		case err := <-r.done:
			t.Fatalf("the watch ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no update within 10s")
		}
	}
}

// firstEventGate holds the first event of each watcher it is given to
// until it is opened, so that those watchers fall behind meanwhile.
type firstEventGate struct {
	release chan struct{}
	once    sync.Once
}

func newFirstEventGate() *firstEventGate { return &firstEventGate{release: make(chan struct{})} }

// holdFirst is the onEvent of one watcher: its first event waits for open.
func (g *firstEventGate) holdFirst() func(*ordersv1.OrderEvent) {
	held := false
	return func(*ordersv1.OrderEvent) {
		if !held {
			held = true
			<-g.release
		}
	}
}

// open lets every held watcher go on. Register it with t.Cleanup after the
// watches start, so that it runs before their cleanups wait for them.
func (g *firstEventGate) open() { g.once.Do(func() { close(g.release) }) }

// expectSequences fails unless the next updates are the events first..last
// in order, each once.
func (r *watchRun) expectSequences(t *testing.T, first, last uint64) {
	t.Helper()
	for seq := first; seq <= last; seq++ {
		u := r.next(t)
		if u.Event == nil || u.Event.GetSequence() != seq {
			t.Fatalf("got %+v, want the event of sequence %d", u, seq)
		}
	}
}

func (r *watchRun) expectCaughtUp(t *testing.T) {
	t.Helper()
	if u := r.next(t); !u.CaughtUp {
		t.Fatalf("got %+v, want caught up", u)
	}
}

// Every watcher gets every live event once, in stream order, from the one
// subscription of the node.
func TestWatchersAllGetEveryLiveEvent(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	w := NewWatcher(monitor, e.store, NewResumePositions(RandomAckTokens()))
	e.createOrders(t, 2) // before the watches: not theirs
	a, b := startWatch(t, w, WatchSpec{}, nil), startWatch(t, w, WatchSpec{}, nil)
	a.expectCaughtUp(t)
	b.expectCaughtUp(t)
	e.createOrders(t, 5)
	a.expectSequences(t, 3, 7)
	b.expectSequences(t, 3, 7)
}

// A watcher too slow for its live buffer leaves the fan-out without
// slowing the others, catches up from the monitor's recent events (not
// from the stream), and joins again: it gets every event once, in order.
// A watcher of one customer has a smaller buffer, and the same.
func TestSlowWatcherCatchesUpFromTheRecentEvents(t *testing.T) {
	for name, tc := range map[string]struct {
		spec   WatchSpec
		buffer int
	}{
		"every customer": {WatchSpec{}, liveBuffer},
		"one customer":   {WatchSpec{CustomerID: "c"}, liveBufferCustomer}, // createOrders' customer
	} {
		t.Run(name, func(t *testing.T) { slowWatcherCatchesUp(t, tc.spec, tc.buffer) })
	}
}

func slowWatcherCatchesUp(t *testing.T, spec WatchSpec, buffer int) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	store := &countingReader{Store: e.store}
	w := NewWatcher(monitor, store, NewResumePositions(RandomAckTokens()))
	if err := e.store.Ready(testsupport.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err) // the stream exists before anything is stored in it
	}
	gate := newFirstEventGate()
	slow := startWatch(t, w, spec, gate.holdFirst())
	t.Cleanup(gate.open) // runs before the watch's own cleanup, which waits for it to end
	fast := startWatch(t, w, WatchSpec{}, nil)
	slow.expectCaughtUp(t)
	fast.expectCaughtUp(t)

	n := uint64(buffer + 50)
	e.createOrders(t, int(n))
	fast.expectSequences(t, 1, n) // not held up by the slow one
	waitFor(t, 10*time.Second, "the slow watcher leaves the fan-out", func() bool { return monitor.Watchers() == 1 })
	gate.open()
	slow.expectSequences(t, 1, n)
	waitFor(t, 10*time.Second, "the slow watcher joins again", func() bool { return monitor.Watchers() == 2 })
	if reads := store.reads.Load(); reads != 0 {
		t.Errorf("the watchers read the stream %d times; the slow one should catch up from the recent events", reads)
	}
	e.createOrders(t, 2)
	slow.expectSequences(t, n+1, n+2)
	fast.expectSequences(t, n+1, n+2)
}

// A watcher that resumes from the sequence after the last event it got
// misses nothing stored meanwhile and sees nothing twice, from the replay
// through to live events.
func TestWatchResumesGapFreeFromAStartSequence(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	w := NewWatcher(monitor, e.store, NewResumePositions(RandomAckTokens()))
	e.createOrders(t, 5)
	first := startWatch(t, w, WatchSpec{ReplayAll: true}, nil)
	first.expectSequences(t, 1, 3)
	first.cancel() // the client goes away after sequence 3

	e.createOrders(t, 3) // stored while it was away
	resumed := startWatch(t, w, WatchSpec{StartSequence: 4}, nil)
	resumed.expectSequences(t, 4, 8)
	resumed.expectCaughtUp(t)
	e.createOrders(t, 2)
	resumed.expectSequences(t, 9, 10)
}
