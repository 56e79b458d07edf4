package server_test

import (
	"fmt"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// createIn makes an order whose id lands in partition k of n.
func (n *testNode) createIn(t *testing.T, k, partitions int) *ordersv1.Order {
	t.Helper()
	for i := 0; ; i++ {
		id := fmt.Sprintf("dl3-order-%d", i)
		if eventstore.PartitionOf(id, partitions) != k {
			continue
		}
		req := validCreate("")
		req.OrderId = id
		res, err := n.client.CreateOrder(testCtx(t), req)
		if err != nil {
			t.Fatalf("CreateOrder(%s): %v", id, err)
		}
		return res.GetOrder()
	}
}

// checkLetterOf fails unless l is a dead letter of order's created event.
func checkLetterOf(t *testing.T, l *ordersv1.DeadLetter, order *ordersv1.Order) {
	t.Helper()
	if l.GetEventSequence() != order.GetRevision() || l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() ||
		l.GetEvent().GetSequence() != order.GetRevision() {
		t.Errorf("dead letter's event %v (sequence %d), want order %s at %d", l.GetEvent(), l.GetEventSequence(), order.GetOrderId(), order.GetRevision())
	}
}

// On three partitions, an event of partition 2 nak'ed at each of its max
// deliveries is a dead letter with its event; redriven, it comes to the
// queue's stream again; given up on again, it is a redriven dead letter
// still leading to its event; redriven once more, its ack settles it.
func TestDeadLettersAndRedriveOnPartitions(t *testing.T) {
	t.Parallel()
	const partitions = 3
	n := startPartitionedNode(t, partitions)
	order := n.createIn(t, 2, partitions)
	stream, _ := n.consume(t, limitedQueue("dl3-max", 2, time.Minute))
	nakTwice := func(what string) {
		t.Helper()
		for attempt := uint64(1); attempt <= 2; attempt++ {
			d := nextEvent(t, stream)
			if d.GetDeliveryAttempt() != attempt || d.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() ||
				d.GetEvent().GetSequence() != order.GetRevision() {
				t.Fatalf("%s, delivery %d: attempt %d of %s at %d", what, attempt, d.GetDeliveryAttempt(),
					d.GetEvent().GetOrder().GetOrderId(), d.GetEvent().GetSequence())
			}
			n.ack(t, ordersv1.AckAction_ACK_ACTION_NAK, d.GetAckToken())
		}
	}
	nakTwice("first deliveries")
	l := n.awaitDeadLetters(t, "dl3-max", 1)[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES || l.GetDeliveryAttempts() != 2 || l.GetRedriven() {
		t.Errorf("dead letter %v", l)
	}
	checkLetterOf(t, l, order)

	res, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl3-max", Ids: []uint64{l.GetId()}})
	if err != nil || len(res.GetRedriven()) != 1 || len(res.GetNotFound()) != 0 {
		t.Fatalf("redrive: %v %v", res, err)
	}
	nakTwice("redriven deliveries")
	again := n.awaitDeadLetters(t, "dl3-max", 1)[0]
	if again.GetId() == l.GetId() || !again.GetRedriven() {
		t.Errorf("dead letter of the redrive: %v", again)
	}
	checkLetterOf(t, again, order)

	if res, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl3-max", All: true}); err != nil || len(res.GetRedriven()) != 1 {
		t.Fatalf("second redrive: %v %v", res, err)
	}
	d := nextEvent(t, stream)
	if d.GetDeliveryAttempt() != 1 || d.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() || d.GetAckToken() == "" {
		t.Fatalf("redriven delivery: attempt %d of %s", d.GetDeliveryAttempt(), d.GetEvent().GetOrder().GetOrderId())
	}
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "dl3-max"})
	if err != nil || got.GetConsumer().GetNumRedrivePending() != 0 || got.GetConsumer().GetDeadLetterCount() != 0 {
		t.Errorf("GetConsumer after the acked redrive: %v %v", got, err)
	}
	if letters := n.deadLetters(t, "dl3-max"); len(letters) != 0 {
		t.Errorf("dead letters after the acked redrive: %v", letters)
	}
}

// On three partitions, an event of partition 1 that a client terminates
// is a dead letter with its event and the client's reason.
func TestTerminatedEventOnAPartitionIsADeadLetter(t *testing.T) {
	t.Parallel()
	const partitions = 3
	n := startPartitionedNode(t, partitions)
	order := n.createIn(t, 1, partitions)
	stream, _ := n.consume(t, limitedQueue("dl3-term", 5, time.Minute))
	d := nextEvent(t, stream)
	res, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{
		AckToken: d.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "no such warehouse",
	}}})
	if err != nil || !res.GetResults()[0].GetConfirmed() {
		t.Fatalf("TERM: %v %v", res, err)
	}
	l := n.awaitDeadLetters(t, "dl3-term", 1)[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED || l.GetTermReason() != "no such warehouse" || l.GetDeliveryAttempts() != 1 {
		t.Errorf("dead letter %v", l)
	}
	checkLetterOf(t, l, order)
}
