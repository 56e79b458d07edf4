package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// In layout 3 a queue is one consumer per partition under its name: made,
// changed and deleted on every partition, a half-made one completed by
// the next call, its state summed, and counted once against the cap.
func TestQueueIsOneConsumerPerPartition(t *testing.T) {
	const n = 3
	store, js := partitionedStore(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created := StreamName + ".created.*.*" // the queue's terms, as in layout 2
	cfg := jetstream.ConsumerConfig{Durable: "q", FilterSubjects: []string{created},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1}
	queue, err := store.EnsureConsumers(ctx, cfg, 1)
	if err != nil || len(queue) != n {
		t.Fatalf("EnsureConsumers = %d consumers, %v; want %d", len(queue), err, n)
	}
	onPartition := func(k int) (*jetstream.ConsumerInfo, error) {
		t.Helper()
		stream, err := js.Stream(ctx, Partition{Number: k, Of: n}.Stream())
		if err != nil {
			t.Fatal(err)
		}
		cons, err := stream.Consumer(ctx, "q")
		if err != nil {
			return nil, err
		}
		return cons.CachedInfo(), nil
	}
	for k, qc := range queue {
		info, err := onPartition(k)
		want := fmt.Sprintf("ORDERS.%d.created.*.*", k)
		if err != nil || !slices.Equal(info.Config.FilterSubjects, []string{want}) {
			t.Fatalf("partition %d's consumer: %v, %v; want filter %s", k, info, err, want)
		}
		if qc.Partition.Number != k || !slices.Equal(qc.Config.FilterSubjects, []string{created}) {
			t.Errorf("QueueConsumer %d: partition %v, filters %v; want the queue's %s", k, qc.Partition, qc.Config.FilterSubjects, created)
		}
	}

	perPartition := make([]uint64, n)
	for i := range 30 {
		id := fmt.Sprintf("order-%d", i)
		if _, err := store.Create(ctx, newOrder("c1", id, "")); err != nil {
			t.Fatal(err)
		}
		perPartition[PartitionOf(id, n)]++
	}
	q, err := store.Consumer(ctx, "q")
	if err != nil || q.NumPending != 30 || len(q.Partitions) != n || len(q.Missing) != 0 || !slices.Equal(q.Filters, []string{created}) {
		t.Fatalf("Consumer(q) = %+v, %v; want 30 pending over %d partitions, filters %s", q, err, n, created)
	}
	for k, pc := range q.Partitions {
		if pc.Partition.Number != k || pc.Consumer.NumPending != perPartition[k] || perPartition[k] == 0 {
			t.Errorf("partition %d: %d pending, want %d (of %v)", k, pc.Consumer.NumPending, perPartition[k], perPartition)
		}
	}

	// The cap counts queues, not consumers: with a cap of 2, a second
	// queue (3 consumers more) is made, a third is refused.
	other := cfg
	other.Durable = "q2"
	if _, err := store.EnsureConsumers(ctx, other, 2); err != nil {
		t.Errorf("EnsureConsumers(q2) with cap 2 and one queue = %v, want it made", err)
	}
	other.Durable = "q3"
	if _, err := store.EnsureConsumers(ctx, other, 2); !errors.Is(err, ErrTooManyConsumers) {
		t.Errorf("EnsureConsumers(q3) with cap 2 and two queues = %v, want ErrTooManyConsumers", err)
	}
	if err := store.DeleteConsumer(ctx, "q2"); err != nil {
		t.Fatal(err)
	}

	// Half-made (partition 1 lost its consumer): shown, then completed.
	stream1, err := js.Stream(ctx, Partition{Number: 1, Of: n}.Stream())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream1.DeleteConsumer(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if q, err := store.Consumer(ctx, "q"); err != nil || len(q.Missing) != 1 || q.Missing[0].Number != 1 || q.NumPending != 30-perPartition[1] {
		t.Fatalf("Consumer(q) missing partition 1 = %+v, %v; want it missing, %d pending", q, err, 30-perPartition[1])
	}
	if _, err := store.EnsureConsumers(ctx, cfg, 1); err != nil {
		t.Fatalf("EnsureConsumers completing q: %v", err)
	}
	if _, err := onPartition(1); err != nil {
		t.Fatalf("partition 1's consumer not made again: %v", err)
	}

	durables, err := store.Durables(ctx)
	if err != nil || len(durables) != 1 || durables[0].Name != "q" || durables[0].NumPending != 30 {
		t.Errorf("Durables = %+v, %v; want q once, 30 pending", durables, err)
	}

	wait := 45 * time.Second
	if q, err := store.UpdateConsumer(ctx, "q", ConsumerChange{AckWait: &wait}); err != nil || q.AckWait != wait || len(q.Partitions) != n {
		t.Fatalf("UpdateConsumer = %+v, %v", q, err)
	}
	for k := range n {
		if info, err := onPartition(k); err != nil || info.Config.AckWait != wait || !slices.Equal(info.Config.FilterSubjects, []string{fmt.Sprintf("ORDERS.%d.created.*.*", k)}) {
			t.Errorf("partition %d after the update: %v, %v; want ack wait %s, its own filter", k, info, err, wait)
		}
	}

	if err := store.DeleteConsumer(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	for k := range n {
		if _, err := onPartition(k); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("partition %d's consumer after the delete: %v, want gone", k, err)
		}
	}
	if err := store.DeleteConsumer(ctx, "q"); !errors.Is(err, ErrConsumerNotFound) {
		t.Errorf("DeleteConsumer(q) again = %v, want ErrConsumerNotFound", err)
	}
}
