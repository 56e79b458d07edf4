package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
)

// review: the whole seed flow end to end. Creates run at a fixed
// concurrency for a while, and a reviewer approves each created order:
// ordersd's built-in review worker (CreateOrder over gRPC, on a node of its
// own with --review on, so that it reviews nothing of the other
// workloads), against a direct nats.go program doing the seed's three
// steps on the bench node (publish created; a pull consumer that publishes
// approved with the same expected-sequence check; ack). A plain NATS
// subscription on ORDERS.approved.> watches the approvals arrive.
//
// The rate is reviews per second, from the first create to the last
// approval; the latencies are from a create's acknowledgement to its
// approval event; the note adds the create rate and the lag after the
// burst (from the last create's acknowledgement to the last approval).
func (b *bench) review() error {
	ctx := context.Background()
	// Direct, on the bench node's server (its review worker is off).
	stream, err := b.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	created := statusSubjects(ordersv1.OrderStatus_ORDER_STATUS_CREATED)
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bench-review-direct", FilterSubject: created, AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1,
		MaxAckPending: 1000,
	})
	if err != nil {
		return err
	}
	reviewerCtx, stopReviewer := context.WithCancel(ctx)
	reviewerDone := make(chan error, 1)
	go func() { reviewerDone <- b.directReviewer(reviewerCtx, b.js, cons, b.o.reviewWindow) }()
	direct, err := b.reviewFlow(b.nc, func() (string, error) {
		order := newDirectOrder()
		_, err := b.js.PublishMsg(ctx, b.directEvent(order, nextRequestID()), b.expectNew(order))
		return order.GetOrderId(), err
	})
	stopReviewer()
	if rerr := <-reviewerDone; err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}

	// ordersd, on a node of its own with the review worker on.
	rn, err := startReviewNode(b.o)
	if err != nil {
		return err
	}
	defer rn.stop()
	ordersd, err := b.reviewFlow(rn.nc, func() (string, error) {
		res, err := rn.client.CreateOrder(ctx, benchCreate())
		return res.GetOrder().GetOrderId(), err
	})
	if err != nil {
		return fmt.Errorf("ordersd: %w", err)
	}
	r := compare(fmt.Sprintf("review, creates c=%d, lag to approval", b.o.reviewCreateC), direct.side, ordersd.side, 0)
	r.Note = fmt.Sprintf("creates/s direct %.0f, ordersd %.0f; lag after the last create: direct %s, ordersd %s; ordersd review concurrency %d",
		direct.createRate, ordersd.createRate, direct.tail.Round(100*time.Microsecond), ordersd.tail.Round(100*time.Microsecond), node.DefaultReviewConcurrency)
	b.add(r)
	return nil
}

// flowResult is one side of the review workload.
type flowResult struct {
	side       side // ops: reviews; elapsed: first create to last approval; lat: ack to approval
	createRate float64
	tail       time.Duration // last create's ack to last approval
}

// reviewFlow runs creates (create returns the order id once the create is
// acknowledged) at the review concurrency for the review duration, while
// nc watches the approvals, and waits for every created order's approval.
func (b *bench) reviewFlow(nc *nats.Conn, create func() (string, error)) (flowResult, error) {
	var (
		mu       sync.Mutex // protects acked and approved
		acked    = map[string]time.Time{}
		approved = map[string]time.Time{}
		count    atomic.Int64
	)
	sub, err := nc.Subscribe(eventstore.StreamName+".approved.>", func(m *nats.Msg) {
		now := time.Now()
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		mu.Lock()
		if _, seen := approved[id]; !seen {
			approved[id] = now
			count.Add(1)
		}
		mu.Unlock()
	})
	if err != nil {
		return flowResult{}, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return flowResult{}, err
	}
	if err := nc.Flush(); err != nil {
		return flowResult{}, err
	}
	cpu0 := cpuTime()
	creates, err := runFor(b.o.reviewDuration, b.o.reviewCreateC, func(int) (bool, error) {
		id, err := create()
		if err == nil {
			mu.Lock()
			acked[id] = time.Now()
			mu.Unlock()
		}
		return false, err
	})
	if err != nil {
		return flowResult{}, err
	}
	start := time.Now().Add(-creates.elapsed)
	deadline := time.Now().Add(b.o.reviewWait)
	for count.Load() < int64(creates.ops) {
		if time.Now().After(deadline) {
			return flowResult{}, fmt.Errorf("%d of %d orders approved %s after the last create", count.Load(), creates.ops, b.o.reviewWait)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	h := &histogram{}
	var last, burstEnd time.Time
	for _, at := range acked {
		if at.After(burstEnd) {
			burstEnd = at
		}
	}
	for id, at := range approved {
		if at.After(last) {
			last = at
		}
		if ack, ok := acked[id]; ok {
			h.record(max(0, at.Sub(ack))) // an approval can come before the client hears of its create
		}
	}
	return flowResult{
		side:       side{ops: uint64(len(approved)), elapsed: last.Sub(start), cpu: cpuTime() - cpu0, lat: h},
		createRate: creates.rate(),
		tail:       max(0, last.Sub(burstEnd)),
	}, nil
}

// directReviewer is the seed's reviewer written directly with nats.go, as
// a careful user would: created events from a pull consumer, the approved
// event built from each one's payload and published with the created
// event's sequence as expected last sequence of the order's subjects, up
// to window publishes in flight, and each event acked once its approval
// is stored.
func (b *bench) directReviewer(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, window int) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(min(window, 1000)))
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); it.Stop() }()
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	defer wg.Wait()
	var failed atomic.Value
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if err, ok := failed.Load().(error); ok {
				return err
			}
			return nil
		}
		if err != nil {
			return err
		}
		order := &ordersv1.Order{}
		if err := proto.Unmarshal(msg.Data(), order); err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		order.Status = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
		order.UpdateTime = timestamppb.Now()
		slots <- struct{}{}
		f, err := js.PublishMsgAsync(b.directEvent(order, "review"), b.o.layout.ExpectRevision(eventstore.KeyOf(order), meta.Sequence.Stream))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			select {
			case <-f.Ok():
				_ = msg.Ack()
			case err := <-f.Err():
				failed.CompareAndSwap(nil, err)
			}
		}()
	}
}

// reviewNode is an ordersd node with its review worker on.
type reviewNode struct {
	client ordersv1.OrderServiceClient
	nc     *nats.Conn // to watch the approvals
	stop   func()
}

// startReviewNode starts a node like the bench's own, on a data directory
// of its own, with the review worker on.
func startReviewNode(o options) (*reviewNode, error) {
	dataDir, err := os.MkdirTemp("", "ordersbench-review-")
	if err != nil {
		return nil, err
	}
	n, err := startBenchNode(o, dataDir, func(cfg *node.Config) {
		cfg.Review, cfg.ReviewLimit = true, math.MaxInt64 // approve every order
	})
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("the review node did not start: %w", err)
	}
	conn, err := grpc.NewClient(n.ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.stop()
		os.RemoveAll(dataDir)
		return nil, err
	}
	rn := &reviewNode{client: ordersv1.NewOrderServiceClient(conn)}
	rn.stop = func() {
		if rn.nc != nil {
			rn.nc.Close()
		}
		conn.Close()
		n.stop()
		os.RemoveAll(dataDir)
	}
	if rn.nc, err = n.ready.ConnectNATS(nats.Name("ordersbench-review-watch")); err != nil {
		rn.stop()
		return nil, err
	}
	return rn, nil
}
