package faultrun

import (
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// On a real three-node JetStream cluster, the run's observers see what
// the classification rests on: each delivery of the consumer (stream
// sequence and delivery count) going out before the client that pulled
// it has it, a redelivery after the ack wait as the next count, and the
// election of a new consumer leader after a step-down, by its advisory
// and by the consumer's leader_since.
func TestObserversSeeSendsAndElections(t *testing.T) {
	ctx := testsupport.Context(t, time.Minute)
	cl := testsupport.StartNATSCluster(t, 3)
	const stream, consumer = "OBS", "work"
	sends, leaders := NewSendLog(stream, consumer), newLeaderLog(stream, consumer)
	for _, ns := range cl.Servers {
		nc := testsupport.Connect(t, ns)
		if err := sends.Observe(nc); err != nil {
			t.Fatal(err)
		}
		if err := leaders.observe(nc); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	js := testsupport.JetStream(t, cl.Servers[0])
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"obs.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Another consumer's deliveries are not this one's.
	other, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "other", AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "obs.1", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	go leaders.poll(ctx, js, 50*time.Millisecond)

	fetchOne := func(c jetstream.Consumer) (jetstream.Msg, time.Time) {
		t.Helper()
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			return m, time.Now()
		}
		t.Fatalf("nothing fetched: %v", batch.Error())
		return nil, time.Time{}
	}
	if _, got := fetchOne(other); sends.SentBefore(ack.Sequence, 1, got) {
		t.Fatal("another consumer's delivery was logged as this one's")
	}
	for attempt := uint64(1); attempt <= 2; attempt++ {
		m, _ := fetchOne(cons) // attempt 1 not acked: it comes again after the ack wait
		meta, _ := m.Metadata()
		if meta.NumDelivered != attempt {
			t.Fatalf("delivery count %d, want %d", meta.NumDelivered, attempt)
		}
		// The observers' handlers run on their own goroutines: wait for
		// this send to be logged.
		waitFor(t, 5*time.Second, fmt.Sprintf("the send of attempt %d logged", attempt), func() error {
			if _, ok := sends.firstSentAfter(sendKey{ack.Sequence, attempt}, time.Time{}); !ok {
				return fmt.Errorf("not logged")
			}
			return nil
		})
		if attempt < 2 {
			continue
		}
		// What the run relies on: a send is stamped before an ack of it
		// confirmed afterwards (in the run that is a gRPC call to ordersd
		// and its JetStream ack away; here one round trip to the server).
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		if confirmed := time.Now(); !sends.SentBefore(ack.Sequence, attempt, confirmed) {
			at, _ := sends.firstSentAfter(sendKey{ack.Sequence, attempt}, time.Time{})
			t.Errorf("attempt %d logged %v after its ack was confirmed", attempt, at.Sub(confirmed))
		}
	}

	waitFor(t, 10*time.Second, "the consumer's first leader logged", func() error {
		if leaders.count() == 0 {
			return fmt.Errorf("none")
		}
		return nil
	})
	steppedDown := time.Now()
	nc := testsupport.Connect(t, cl.Servers[0])
	if _, err := nc.Request(fmt.Sprintf(natsserver.JSApiConsumerLeaderStepDownT, stream, consumer), nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the new consumer leader logged", func() error {
		if !leaders.electedBetween(steppedDown, time.Now()) {
			return fmt.Errorf("no election after the step-down (%d logged)", leaders.count())
		}
		return nil
	})
	waitFor(t, 20*time.Second, "the new leader seen both ways", func() error {
		leaders.mu.Lock()
		defer leaders.mu.Unlock()
		seen := map[string]bool{}
		for _, e := range leaders.elections {
			if e.at.After(steppedDown) && e.leader != "" {
				seen[e.via] = true
			}
		}
		if !seen[viaAdvisory] || !seen[viaPoll] {
			return fmt.Errorf("seen by %v: %v", seen, leaders.elections)
		}
		return nil
	})
}
