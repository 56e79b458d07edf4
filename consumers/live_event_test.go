package consumers

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Each live event is encoded once for every watcher it reaches: the
// watchers of every event and those of its customer all get the same
// bytes, which are the event's WatchOrdersResponse with its resume
// position (the same for every watcher: the event's), and the monitor
// encodes one response per event however many watchers there are.
// Replayed events are each watcher's own, encoded by the caller.
func TestLiveEventIsEncodedOnceForEveryWatcher(t *testing.T) {
	e := newTestEnv(t)
	monitor := NewMonitor(e.nc, eventstore.Layout{}, eventstore.DefaultOpTimeout, e.log, nil)
	defer monitor.Close()
	w := NewWatcher(monitor, e.store, NewResumePositions(RandomAckTokens()))
	const events = 5
	e.createFor(t, "before", 1) // the stream exists before the watches; the event is not theirs
	var runs []*watchRun
	for range 4 {
		runs = append(runs, startWatch(t, w, WatchSpec{}, nil))
	}
	for range 3 {
		runs = append(runs, startWatch(t, w, WatchSpec{CustomerID: "c"}, nil))
	}
	other := startWatch(t, w, WatchSpec{CustomerID: "other"}, nil)
	for _, r := range append(runs, other) {
		r.expectCaughtUp(t)
	}
	e.createOrders(t, events) // all of customer "c"

	first := map[uint64][]byte{} // the bytes the first watcher got, by sequence
	for i, r := range runs {
		for seq := uint64(2); seq <= events+1; seq++ {
			u := r.next(t)
			if u.Event.GetSequence() != seq {
				t.Fatalf("watcher %d got %+v, want the event of sequence %d", i, u, seq)
			}
			got, err := u.EncodedResponse()
			if err != nil {
				t.Fatal(err)
			}
			if u.ResumePosition == "" {
				t.Fatalf("watcher %d, sequence %d: no resume position", i, seq)
			}
			want, err := proto.Marshal(&ordersv1.WatchOrdersResponse{Event: u.Event, ResumePosition: u.ResumePosition})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("watcher %d, sequence %d: encoded %x, want proto.Marshal's %x", i, seq, got, want)
			}
			if i == 0 {
				first[seq] = got
			} else if &got[0] != &first[seq][0] {
				t.Fatalf("watcher %d, sequence %d: its bytes are a copy of their own, not the shared encoding", i, seq)
			}
		}
	}
	if n := monitor.responsesEncoded.Load(); n != events {
		t.Fatalf("the monitor encoded %d responses for %d events and %d watchers, want one per event", n, events, len(runs))
	}

	// The other customer's watcher got none of those, and gets its own.
	e.createFor(t, "other", 1)
	if u := other.next(t); u.Event.GetSequence() != events+2 {
		t.Fatalf("the other customer's watcher got %+v, want the event of sequence %d", u, events+2)
	}
	if n := monitor.responsesEncoded.Load(); n != events+1 {
		t.Fatalf("the monitor encoded %d responses, want %d: the other customer's event once, when sent", n, events+1)
	}

	replay := startWatch(t, w, WatchSpec{ReplayAll: true}, nil)
	u := replay.next(t)
	if encoded, err := u.EncodedResponse(); u.Event.GetSequence() != 1 || encoded != nil || err != nil {
		t.Fatalf("replayed %+v came with a shared encoding (%x, %v), want none", u, encoded, err)
	}
}
