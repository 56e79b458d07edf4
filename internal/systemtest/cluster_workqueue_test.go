package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/faultrun"
)

// workQueueClient consumes created events from a durable consumer on the
// surviving nodes as a client behind a load balancer would: its stream is
// reopened, on the next node, whenever it ends with UNAVAILABLE, and it
// acks what it received in batches, each on the next node, whichever node
// delivered the events.
type workQueueClient struct {
	t        *testing.T
	stats    *callStats
	nodes    []*clusterNode
	consumer string
	tokens   chan ackable // deliveries to ack, in order
	// sends logs what JetStream sent the consumer, seen on connections
	// to each node's NATS server.
	sends *faultrun.SendLog

	mu         sync.Mutex              // protects the fields below
	deliveries map[uint64]int          // stream sequence → times delivered
	acked      map[uint64]confirmedAck // stream sequence → its first confirmed ack
	tally      workQueueFigures
}

// ackable is one delivery to ack.
type ackable struct {
	seq      uint64
	attempt  uint64    // its delivery attempt
	received time.Time // when it came
	token    string
}

// confirmedAck is when the ack of an event was confirmed, and the
// delivery (attempt, when it came) whose token it used.
type confirmedAck struct {
	at       time.Time
	attempt  uint64
	received time.Time
}

// workQueueFigures are what a workQueueClient did.
type workQueueFigures struct {
	events, deliveries, redelivered int      // distinct events, deliveries, events delivered more than once
	reopens                         int      // streams reopened after UNAVAILABLE
	confirmed, unconfirmed, givenUp int      // acks confirmed; acks unconfirmed and retried; acks given up, left to redelivery
	afterConfirmed                  []string // every delivery of an event whose ack was confirmed, with its timing
	longestSilence                  time.Duration
}

const (
	// queueHeartbeat is the work queue stream's heartbeat interval.
	queueHeartbeat = time.Second
	// maxQueueSilence is how long a work queue stream may send nothing
	// before it counts as hung: heartbeats come every queueHeartbeat, even
	// while ordersd binds to the consumer.
	maxQueueSilence = 5 * time.Second
	// queueAckWait is the consumer's ack wait: short, so that deliveries
	// whose acks were lost come back within the test.
	queueAckWait = 3 * time.Second
	// ackCallDeadline is the deadline of AckOrders, as long as ordersd's
	// --nats-timeout: ordersd stops waiting for confirmations just before
	// it, so the answer still says which acks were confirmed.
	ackCallDeadline = 5 * time.Second
	// maxAckAttempts bounds the attempts to have one ack confirmed; after
	// them it is left to redelivery.
	maxAckAttempts = 3
)

func newWorkQueueClient(t *testing.T, stats *callStats, nodes []*clusterNode) *workQueueClient {
	const consumer = "leader-loss"
	q := &workQueueClient{t: t, stats: stats, nodes: nodes, consumer: consumer, tokens: make(chan ackable, 1<<16),
		deliveries: map[uint64]int{}, acked: map[uint64]confirmedAck{}, sends: faultrun.NewSendLog(eventstore.StreamName, consumer)}
	for _, n := range nodes {
		nc, err := n.nats()
		if err != nil {
			t.Fatalf("connect to %s's NATS: %v", n.name, err)
		}
		t.Cleanup(nc.Close)
		if err := q.sends.Observe(nc); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

// start consumes and acks until ctx ends.
func (q *workQueueClient) start(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q.tokens)
		q.consume(ctx)
	})
	wg.Go(func() { q.ack(ctx) })
	return &wg
}

// consume opens the stream on one node after the other, as long as it ends
// with UNAVAILABLE.
func (q *workQueueClient) consume(ctx context.Context) {
	for i := 0; ; i++ {
		node := q.nodes[i%len(q.nodes)]
		opened := time.Now()
		err := q.consumeOnce(ctx, node)
		if ctx.Err() != nil {
			return
		}
		q.t.Logf("ConsumeOrders on %s ended after %v: %v", node.name, time.Since(opened).Round(time.Millisecond), err)
		if status.Code(err) != codes.Unavailable {
			q.t.Errorf("ConsumeOrders on %s ended with %v, want UNAVAILABLE", node.name, err)
			if !errors.Is(err, errQueueSilent) {
				return
			}
		}
		q.mu.Lock()
		q.tally.reopens++
		q.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
}

var errQueueSilent = errors.New("the stream sent nothing, not even a heartbeat")

// consumeOnce runs one ConsumeOrders stream until it ends, and says how.
func (q *workQueueClient) consumeOnce(ctx context.Context, node *clusterNode) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := node.client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer:          q.consumer,
		Statuses:          []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight:       100,
		Settings:          &ordersv1.ConsumerSettings{AckWait: durationpb.New(queueAckWait)},
		HeartbeatInterval: durationpb.New(queueHeartbeat),
	})
	if err != nil {
		return err
	}
	for {
		var silent atomic.Bool
		watchdog := time.AfterFunc(maxQueueSilence, func() {
			silent.Store(true)
			cancel()
		})
		waited := time.Now()
		res, err := stream.Recv()
		watchdog.Stop()
		q.mu.Lock()
		q.tally.longestSilence = max(q.tally.longestSilence, time.Since(waited))
		q.mu.Unlock()
		if silent.Load() {
			return fmt.Errorf("%w for %v", errQueueSilent, maxQueueSilence)
		}
		if err != nil {
			return err
		}
		if res.GetHeartbeat() {
			continue
		}
		q.delivered(node, res)
		q.tokens <- ackable{seq: res.GetEvent().GetSequence(), attempt: res.GetDeliveryAttempt(), received: time.Now(), token: res.GetAckToken()}
	}
}

// delivered records one delivery. Every delivery of an event whose ack
// was confirmed is counted and reported with its timing. JetStream
// replicates an ack before it confirms it, so no leader change may undo
// it here (the consumer leader is killed alone, right after acks: see
// docs/guarantees.md): the one such delivery allowed is a later attempt
// JetStream was seen sending before the ack was confirmed (the ack wait
// ran out first; faultrun.SendLog). Any other means the consumer went
// back.
func (q *workQueueClient) delivered(node *clusterNode, res *ordersv1.ConsumeOrdersResponse) {
	seq, attempt := res.GetEvent().GetSequence(), res.GetDeliveryAttempt()
	if status := res.GetEvent().GetOrder().GetStatus(); status != ordersv1.OrderStatus_ORDER_STATUS_CREATED {
		q.t.Errorf("the work queue of created events delivered a %v event (sequence %d)", status, seq)
	}
	q.mu.Lock()
	q.deliveries[seq]++
	acked, ok := q.acked[seq]
	q.mu.Unlock()
	if !ok {
		return
	}
	after := time.Since(acked.at)
	report := fmt.Sprintf("%s delivered sequence %d (attempt %d) %v after the ack of attempt %d was confirmed, %v after that delivery",
		node.name, seq, attempt, after.Round(time.Millisecond), acked.attempt, acked.at.Sub(acked.received).Round(time.Millisecond))
	q.mu.Lock()
	q.tally.afterConfirmed = append(q.tally.afterConfirmed, report)
	q.mu.Unlock()
	// Its send, seen on the observers' connections, comes before it
	// reaches this client through ordersd and gRPC; wait for the log to
	// have it (or not) before judging.
	raced := attempt > acked.attempt && waitFor(time.Second, func() bool { return q.sends.SentBefore(seq, attempt, acked.at) })
	if raced {
		q.t.Logf("%s: sent before the ack reached JetStream", report)
		return
	}
	q.t.Errorf("%s: the consumer lost a confirmed ack", report)
}

// ack acks deliveries in batches of what is waiting, each batch on the
// next node, until the consumer is done. An ack that JetStream did not
// confirm is sent again, up to maxAckAttempts times; after that its event
// comes back after the ack wait.
func (q *workQueueClient) ack(ctx context.Context) {
	for i := 0; ; i++ {
		batch, ok := q.nextBatch(200)
		if !ok {
			return
		}
		node := q.nodes[i%len(q.nodes)]
		for attempt := 1; len(batch) > 0; attempt++ {
			req := &ordersv1.AckOrdersRequest{}
			for _, a := range batch {
				req.Acks = append(req.Acks, &ordersv1.Ack{AckToken: a.token, Action: ordersv1.AckAction_ACK_ACTION_ACK})
			}
			var res *ordersv1.AckOrdersResponse
			_, err := q.stats.retry(ctx, "AckOrders", ackCallDeadline, func(ctx context.Context) (err error) {
				res, err = node.client.AckOrders(ctx, req)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					q.t.Errorf("AckOrders: %v", err)
				}
				return
			}
			var unconfirmed []ackable
			q.mu.Lock()
			for i, r := range res.GetResults() {
				if r.GetConfirmed() {
					q.tally.confirmed++
					if _, ok := q.acked[batch[i].seq]; !ok {
						q.acked[batch[i].seq] = confirmedAck{at: time.Now(), attempt: batch[i].attempt, received: batch[i].received}
					}
				} else {
					unconfirmed = append(unconfirmed, batch[i])
				}
			}
			if attempt == maxAckAttempts {
				q.tally.givenUp += len(unconfirmed)
				unconfirmed = nil
			} else {
				q.tally.unconfirmed += len(unconfirmed)
			}
			q.mu.Unlock()
			if len(unconfirmed) > 0 {
				q.t.Logf("AckOrders on %s, attempt %d: %d of %d acks not confirmed", node.name, attempt, len(unconfirmed), len(batch))
			}
			batch = unconfirmed
		}
	}
}

// nextBatch waits for a delivery to ack and returns it with up to n-1 more
// that are waiting; false when there will be no more. A batch may hold two
// tokens of one event (two deliveries of it): AckOrders must confirm both.
func (q *workQueueClient) nextBatch(n int) ([]ackable, bool) {
	a, ok := <-q.tokens
	if !ok {
		return nil, false
	}
	batch := []ackable{a}
	for len(batch) < n {
		select {
		case a, ok := <-q.tokens:
			if !ok {
				return batch, true
			}
			batch = append(batch, a)
		default:
			return batch, true
		}
	}
	return batch, true
}

func (q *workQueueClient) received(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deliveries[seq] > 0
}

func (q *workQueueClient) receivedAll(seqs map[uint64]bool) bool {
	return len(q.missing(seqs)) == 0
}

// missing lists the sequences of seqs never delivered, in order.
func (q *workQueueClient) missing(seqs map[uint64]bool) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var missing []uint64
	for seq := range seqs {
		if q.deliveries[seq] == 0 {
			missing = append(missing, seq)
		}
	}
	slices.Sort(missing)
	return missing
}

func (q *workQueueClient) figures() workQueueFigures {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.tally
	f.afterConfirmed = slices.Clone(f.afterConfirmed)
	for _, n := range q.deliveries {
		f.events++
		f.deliveries += n
		if n > 1 {
			f.redelivered++
		}
	}
	return f
}

// moveConsumerLeader makes server the leader of the consumer of ORDERS,
// stepping the current leader down in its favour until it is.
func moveConsumerLeader(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, consumer, server string) error {
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		cons, err := js.Consumer(ctx, "ORDERS", consumer)
		if err == nil && cons.CachedInfo().Cluster != nil && cons.CachedInfo().Cluster.Leader == server {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consumer %s: leader not moved to %s within 10s (last: %v)", consumer, server, err)
		}
		if err == nil {
			// An answer with an error (such as "already leader") is fine:
			// the next look tells.
			_, _ = nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN.ORDERS."+consumer, req, 2*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventsByRequest counts the stored events of each request id.
func eventsByRequest(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	counts := map[string]int{}
	err := walkStream(ctx, js, func(msg jetstream.Msg) error {
		counts[msg.Headers().Get("Ordersd-Request-Id")]++
		return nil
	})
	return counts, err
}

// walkStream calls visit with every message stored in ORDERS when it is
// called, oldest first, read with an ordered consumer.
func walkStream(ctx context.Context, js jetstream.JetStream, visit func(jetstream.Msg) error) error {
	stream, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		return err
	}
	last := stream.CachedInfo().State.LastSeq
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for last > 0 {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		if err := visit(msg); err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		if meta.Sequence.Stream >= last {
			break
		}
	}
	return nil
}
