package server_test

import (
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// A node dies in the middle of a work queue and a watch: the consumer's
// client acks the tokens it holds on another node and goes on there, and
// the watcher resumes on another node from its next sequence: no event is
// lost, none is seen twice.
func TestNodeLostMidStream(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	a.createMany(t, 20)

	queue := createdQueue("failover")
	queue.MaxInFlight = 5
	queue.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Minute)}
	consuming, _ := a.consume(t, queue)
	var tokens []string
	got := map[uint64]bool{}
	for range 5 {
		res := nextEvent(t, consuming)
		tokens = append(tokens, res.GetAckToken())
		got[res.GetEvent().GetSequence()] = true
	}
	watching, _ := a.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
	var last uint64
	for last < 10 {
		res, err := watching.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != last+1 {
				t.Fatalf("watch: got %d after %d", ev.GetSequence(), last)
			}
			last = ev.GetSequence()
		}
	}

	a.kill()
	if _, err := consuming.Recv(); err == nil {
		t.Fatal("the consume stream of the dead node went on")
	}

	// The client acks what it holds on the other node, and goes on there.
	b.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, tokens...)
	queue.MaxInFlight = 100
	again, _ := b.consume(t, queue)
	for len(got) < 20 {
		res := nextEvent(t, again)
		if got[res.GetEvent().GetSequence()] {
			t.Fatalf("sequence %d delivered again after its ack", res.GetEvent().GetSequence())
		}
		got[res.GetEvent().GetSequence()] = true
		b.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, res.GetAckToken())
	}

	// The watcher resumes on the other node from its next sequence.
	resumed, _ := b.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: last + 1}})
	for {
		res, err := resumed.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetCaughtUp() {
			break
		}
		if ev := res.GetEvent(); ev.GetSequence() != last+1 {
			t.Fatalf("resumed watch: got %d after %d", ev.GetSequence(), last)
		}
		last++
	}
	if last != 20 {
		t.Fatalf("the resumed watch caught up at %d, want 20", last)
	}
}
