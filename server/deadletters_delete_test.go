package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
)

// DeleteConsumer deletes the consumer with its redrive queue (consumer
// and markers) and keeps its dead letters: they are listed with their
// events until purged, and a consumer of the same name made afterwards is
// not handed the redrive of the old one.
func TestDeleteConsumerKeepsItsDeadLetters(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	kept, redriven := n.create(t), n.create(t)
	stream, cancel := n.consume(t, limitedQueue("dl-deleted", 5, time.Minute))
	for range 2 {
		n.ack(t, ordersv1.AckAction_ACK_ACTION_TERM, nextEvent(t, stream).GetAckToken())
	}
	cancel()
	letters := n.awaitDeadLetters(t, "dl-deleted", 2)
	var redriveID uint64
	for _, l := range letters {
		if l.GetEvent().GetOrder().GetOrderId() == redriven.GetOrderId() {
			redriveID = l.GetId()
		}
	}
	if res, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-deleted", Ids: []uint64{redriveID}}); err != nil || len(res.GetRedriven()) != 1 {
		t.Fatalf("RedriveDeadLetters: %v, %v", res, err)
	}
	if _, err := n.js.Consumer(testCtx(t), deadletters.RedriveStream, "dl-deleted"); err != nil {
		t.Fatalf("the redrive consumer after the redrive: %v", err)
	}

	if _, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: "dl-deleted"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "dl-deleted"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetConsumer after DeleteConsumer: %v, want NOT_FOUND", err)
	}
	if _, err := n.js.Consumer(testCtx(t), deadletters.RedriveStream, "dl-deleted"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the redrive consumer after DeleteConsumer: %v, want it gone", err)
	}
	if markers := n.streamMsgsOf(t, deadletters.RedriveStream, deadletters.RedriveStream+".dl-deleted"); markers != 0 {
		t.Errorf("%d redrive markers left after DeleteConsumer, want none", markers)
	}
	left := n.deadLetters(t, "dl-deleted")
	if len(left) != 1 || left[0].GetEvent().GetOrder().GetOrderId() != kept.GetOrderId() || left[0].GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED {
		t.Fatalf("dead letters after DeleteConsumer: %v, want the one of %s not redriven, with its event", left, kept.GetOrderId())
	}

	// A new consumer of the name gets the events afresh, not the old
	// consumer's redrive: each order's created event once.
	again, _ := n.consume(t, limitedQueue("dl-deleted", 5, time.Minute))
	seen := map[string]int{}
	for range 2 {
		d := nextEvent(t, again)
		seen[d.GetEvent().GetOrder().GetOrderId()]++
		n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
	}
	if seen[kept.GetOrderId()] != 1 || seen[redriven.GetOrderId()] != 1 {
		t.Errorf("the new consumer's deliveries: %v, want each order once", seen)
	}
	waitForInfo(t, n, "dl-deleted", func(pending, unacked uint64) bool { return pending == 0 && unacked == 0 })
	if pending := n.redrivePending(t, "dl-deleted"); pending != 0 {
		t.Errorf("the new consumer has %d redriven events waiting, want none", pending)
	}

	if res, err := n.queue.PurgeDeadLetters(testCtx(t), &ordersv1.PurgeDeadLettersRequest{Consumer: "dl-deleted", All: true}); err != nil || res.GetPurged() != 1 {
		t.Fatalf("PurgeDeadLetters: %v, %v; want the one kept purged", res, err)
	}
	if left := n.deadLetters(t, "dl-deleted"); len(left) != 0 {
		t.Errorf("dead letters after the purge: %v", left)
	}
}

// streamMsgsOf counts the messages of stream on subject.
func (n *testNode) streamMsgsOf(t *testing.T, stream, subject string) uint64 {
	t.Helper()
	s, err := n.js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// redrivePending is how many redriven events wait for consumer, as
// GetConsumer reports them.
func (n *testNode) redrivePending(t *testing.T, consumer string) uint64 {
	t.Helper()
	res, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: consumer})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetConsumer().GetNumRedrivePending()
}
