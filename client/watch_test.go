package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ordersd/ordersd/client"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// errStop ends a watch in a test.
var errStop = errors.New("stop")

// A replay hands over the stored events, then says it has caught up; a
// watch started again from a saved sequence + 1 goes on from there
// without a repeat.
func TestWatchReplaysCatchesUpAndResumesFromASequence(t *testing.T) {
	c := dialExamplesNode(t)
	customer := "watch-" + client.NewRequestID()
	for range 5 {
		createFor(t, c, customer)
	}
	ctx := testsupport.Context(t, time.Minute)
	var seqs []uint64
	caughtUpAfter := -1
	err := c.Watch(ctx, client.WatchOptions{CustomerID: customer, ReplayAll: true}, func(_ context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			caughtUpAfter = len(seqs)
			return errStop
		}
		seqs = append(seqs, u.Event.GetSequence())
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("watch: %v", err)
	}
	// Five creates, and the review worker approves each.
	if len(seqs) != 10 || caughtUpAfter != 10 {
		t.Fatalf("replay handed over %d events and caught up after %d; want 10 and 10", len(seqs), caughtUpAfter)
	}

	var resumed []uint64
	err = c.Watch(ctx, client.WatchOptions{CustomerID: customer, FromSequence: seqs[6] + 1}, func(_ context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			return errStop
		}
		resumed = append(resumed, u.Event.GetSequence())
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("resumed watch: %v", err)
	}
	if len(resumed) != 3 || resumed[0] != seqs[7] || resumed[2] != seqs[9] {
		t.Fatalf("resumed from %d: %v, want %v", seqs[6]+1, resumed, seqs[7:])
	}
}

// A live watch (from now) whose node dies before any event came misses
// none of the events stored after it began, even those stored (through
// another node) while it was away, and sees each once.
func TestLiveWatchResumesAcrossANodeRestart(t *testing.T) {
	nodes := testnode.StartShared(t, 2, testnode.Options{})
	dial := func(n *testnode.Node) *client.Client {
		c, err := client.Dial(n.Addr(), client.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	watcher, writer := dial(nodes[0]), dial(nodes[1])
	customer := "restart-" + client.NewRequestID()
	before := createFor(t, writer, customer) // stored before the watch began: not handed over

	ctx, cancel := context.WithCancel(testsupport.Context(t, time.Minute))
	updates := make(chan client.WatchUpdate, 100)
	done := make(chan error, 1)
	go func() {
		done <- watcher.Watch(ctx, client.WatchOptions{CustomerID: customer, Heartbeat: time.Second}, func(_ context.Context, u client.WatchUpdate) error {
			updates <- u
			return nil
		})
	}()
	if u := <-updates; !u.CaughtUp {
		t.Fatalf("first update %+v, want caught up", u)
	}
	if err := nodes[0].Kill(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 { // while the watcher's node is away
		ids = append(ids, createFor(t, writer, customer).GetOrderId())
	}
	if err := nodes[0].Restart(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, createFor(t, writer, customer).GetOrderId())

	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < len(ids) {
		select {
		case u := <-updates:
			if u.Event != nil {
				got = append(got, u.Event.GetOrder().GetOrderId())
			}
		case <-timeout:
			t.Fatalf("the watch handed over %v, want %v", got, ids)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	close(updates)
	for u := range updates {
		if u.Event != nil {
			got = append(got, u.Event.GetOrder().GetOrderId())
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("handed over %v, want %v", got, ids)
	}
	for i, id := range ids {
		if got[i] != id || id == before.GetOrderId() {
			t.Fatalf("handed over %v, want %v", got, ids)
		}
	}
}
