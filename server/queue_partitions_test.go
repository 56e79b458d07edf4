package server_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// partitionConsumers are the queue name's consumers as JetStream holds
// them on each of n partitions (nil where there is none).
func (n *testNode) partitionConsumers(t *testing.T, partitions int, name string) []*jetstream.ConsumerInfo {
	t.Helper()
	ctx := testCtx(t)
	out := make([]*jetstream.ConsumerInfo, partitions)
	for k := range partitions {
		stream, err := n.js.Stream(ctx, eventstore.Partition{Number: k, Of: partitions}.Stream())
		if err != nil {
			t.Fatal(err)
		}
		cons, err := stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if out[k], err = cons.Info(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// On three partitions a work queue is one: every order's created event
// reaches it once, from every partition, acked by token; QueueService
// sums its partitions; and deleting it removes every partition's consumer.
func TestWorkQueueSpansPartitions(t *testing.T) {
	t.Parallel()
	const partitions, total = 3, 60
	n := startPartitionedNode(t, partitions)
	orders := n.createMany(t, total)
	stream, cancel := n.consume(t, createdQueue("spread"))
	seen := map[string]int{}
	perPartition := make([]int, partitions)
	var tokens []string
	for len(tokens) < total {
		d := nextEvent(t, stream)
		id := d.GetEvent().GetOrder().GetOrderId()
		seen[id]++
		if seen[id] > 1 {
			t.Fatalf("order %s delivered twice before any ack wait passed", id)
		}
		perPartition[eventstore.PartitionOf(id, partitions)]++
		tokens = append(tokens, d.GetAckToken())
	}
	for _, o := range orders {
		if seen[o.GetOrderId()] != 1 {
			t.Errorf("order %s delivered %d times, want once", o.GetOrderId(), seen[o.GetOrderId()])
		}
	}
	for k, c := range perPartition {
		if c == 0 {
			t.Errorf("no delivery from partition %d: %v", k, perPartition)
		}
	}

	// Delivered, not acked: the info sums what each partition holds.
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "spread"})
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for k, info := range n.partitionConsumers(t, partitions, "spread") {
		if info == nil {
			t.Fatalf("partition %d has no consumer spread", k)
		}
		sum += uint64(info.NumAckPending)
	}
	if c := got.GetConsumer(); c.GetNumAckPending() != total || sum != total || len(c.GetStatuses()) != 1 || c.GetStatuses()[0] != created {
		t.Errorf("GetConsumer(spread) = %v; want %d ack pending (partitions hold %d), statuses [CREATED]", c, total, sum)
	}

	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, tokens...)
	cancel()
	got, err = n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "spread"})
	if err != nil || got.GetConsumer().GetNumAckPending() != 0 || got.GetConsumer().GetNumPending() != 0 {
		t.Errorf("GetConsumer(spread) after the acks = %v, %v; want nothing pending", got, err)
	}

	if _, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: "spread"}); err != nil {
		t.Fatal(err)
	}
	for k, info := range n.partitionConsumers(t, partitions, "spread") {
		if info != nil {
			t.Errorf("partition %d still has the consumer spread after DeleteConsumer", k)
		}
	}
}

// An event not acked within its ack wait comes again, from its partition,
// and its new token acks it.
func TestWorkQueueOnPartitionsRedeliversUnacked(t *testing.T) {
	t.Parallel()
	n := startPartitionedNode(t, 3)
	n.createMany(t, 6)
	req := createdQueue("late")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Second)}
	stream, _ := n.consume(t, req)
	first := nextEvent(t, stream)
	for {
		d := nextEvent(t, stream)
		if d.GetEvent().GetOrder().GetOrderId() != first.GetEvent().GetOrder().GetOrderId() {
			n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
			continue
		}
		if d.GetDeliveryAttempt() < 2 {
			t.Fatalf("order %s again at attempt %d", d.GetEvent().GetOrder().GetOrderId(), d.GetDeliveryAttempt())
		}
		n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
		return
	}
}

// A token of the other layout (same key) is INVALID_ARGUMENT saying so,
// both ways; each node's own tokens ack.
func TestAckTokensOfTheOtherLayoutAreRefused(t *testing.T) {
	t.Parallel()
	one, three := startNode(t), startPartitionedNode(t, 3)
	one.create(t)
	three.create(t)
	fromOne, _ := one.consume(t, createdQueue("cross"))
	fromThree, _ := three.consume(t, createdQueue("cross"))
	tokenOne, tokenThree := nextEvent(t, fromOne).GetAckToken(), nextEvent(t, fromThree).GetAckToken()
	for _, c := range []struct {
		name  string
		node  *testNode
		token string
		want  string
	}{
		{"layout 2's on layout 3", three, tokenOne, "issued in layout 2"},
		{"layout 3's on layout 2", one, tokenThree, "issued in layout 3 with 3 partitions"},
	} {
		err := c.node.tryAck(testCtx(t), ordersv1.AckAction_ACK_ACTION_ACK, c.token)
		if status.Code(errors.Unwrap(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want INVALID_ARGUMENT saying %q", c.name, err, c.want)
		}
	}
	one.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, tokenOne)
	three.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, tokenThree)
}
