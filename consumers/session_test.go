package consumers

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Session sends its backlog in batches, and an ack taken on its stream
// (Settled) frees credit at once, though nothing reached JetStream: the ack
// wait is a minute, and no ack is ever published here.
func TestSessionBatchesAndSettledFreesCreditLocally(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 30)
	wq := NewWorkQueues(e.store, e.letters, e.nc, RandomAckTokens(), e.log, nil, WorkQueueOptions{})
	const credit = 10
	sess := wq.NewSession(ConsumeSpec{Consumer: "s", MaxInFlight: credit, Heartbeat: time.Minute, Settings: ConsumerSettings{AckWait: time.Minute}})

	batches := make(chan []Delivery, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- sess.Run(ctx, func(Delivery) error { return nil }, func(b []Delivery) error {
			batches <- b
			return nil
		})
	}()
	var held []Delivery
	largest := 0
	next := func() {
		t.Helper()
		select {
		case b := <-batches:
			held = append(held, b...)
			largest = max(largest, len(b))
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing more within 10s after %d deliveries (credit was not freed)", len(held))
		}
	}
	for len(held) < credit {
		next()
	}
	if len(held) != credit || largest < 2 {
		t.Fatalf("%d deliveries in batches of at most %d; want %d, several at once", len(held), largest, credit)
	}
	for i, d := range held {
		if d.ID != uint64(i+1) || d.Raw.Order == nil || d.AckToken == "" {
			t.Fatalf("delivery %d: id %d, raw %d bytes, token %q", i, d.ID, len(d.Raw.Order), d.AckToken)
		}
	}
	select {
	case b := <-batches:
		t.Fatalf("%d more sent with no credit free", len(b))
	case <-time.After(300 * time.Millisecond):
	}

	var settles []Settle
	for _, d := range held[:4] {
		ack, known, isHeld := sess.Lookup(d.ID)
		if !known || !isHeld {
			t.Fatalf("Lookup(%d) = known %v, held %v", d.ID, known, isHeld)
		}
		settles = append(settles, Settle{Ack: ack, Action: ActionAck})
	}
	sess.Settled(settles)
	for len(held) < credit+4 {
		next()
	}
	if len(held) != credit+4 {
		t.Fatalf("%d deliveries after 4 acks, want %d", len(held), credit+4)
	}
	if _, known, isHeld := sess.Lookup(held[0].ID); !known || isHeld {
		t.Fatalf("settled delivery: known %v, held %v; want known, not held", known, isHeld)
	}
	if _, known, _ := sess.Lookup(1000); known {
		t.Fatal("delivery 1000 was never made, but is known")
	}
	cancel()
	<-done
}

// A client that leaves mid-batch (the send of a batch fails) gets nothing
// more, and every event of the batch is released at once: the next client
// gets them all long before their minute of ack wait.
func TestSessionBatchNotSentIsReleasedAtOnce(t *testing.T) {
	e := newTestEnv(t)
	e.createOrders(t, 20)
	wq := NewWorkQueues(e.store, e.letters, e.nc, RandomAckTokens(), e.log, nil, WorkQueueOptions{})
	spec := ConsumeSpec{Consumer: "s", MaxInFlight: 20, Heartbeat: time.Minute, Settings: ConsumerSettings{AckWait: time.Minute}}

	broken := errors.New("client gone")
	tried := 0
	err := wq.NewSession(spec).Run(context.Background(), func(Delivery) error { return nil }, func(b []Delivery) error {
		tried += len(b)
		return broken
	})
	if !errors.Is(err, broken) || tried == 0 {
		t.Fatalf("Run = %v after %d tried, want the send error", err, tried)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := 0
	_ = wq.NewSession(spec).Run(ctx, func(Delivery) error { return nil }, func(b []Delivery) error {
		if got += len(b); got >= 20 {
			cancel()
		}
		return nil
	})
	if got != 20 {
		t.Fatalf("the next client got %d events within 5s, want all 20 (ack wait is a minute)", got)
	}
}
