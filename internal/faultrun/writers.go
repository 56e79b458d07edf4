package faultrun

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// OpStats count one kind of write.
type OpStats struct {
	Attempted    int `json:"attempted"`     // operations begun
	Acknowledged int `json:"acknowledged"`  // operations a call answered OK
	Lost         int `json:"lost"`          // acknowledged, and not in the stream afterwards
	Duplicated   int `json:"duplicated"`    // request ids that stored more than one event
	RetriedCalls int `json:"retried_calls"` // calls that failed with a retryable status and were retried
	Unexpected   int `json:"unexpected"`    // calls that failed with a status a retry cannot fix
}

// ledger records what the clients were told, to check against the stream.
type ledger struct {
	mu        sync.Mutex
	create    OpStats
	approve   OpStats
	created   map[string]string // create request id → order id, acknowledged
	approved  map[string]uint64 // order id → revision of the acknowledged approval
	toApprove chan *ordersv1.Order
	errors    []string // the first unexpected errors, for the report

	lastAck      time.Time     // the latest acknowledged write
	longestNoAck time.Duration // the longest time without any acknowledged write
	outages      []outage      // the times without any acknowledged write longer than minOutage
	longestWait  time.Duration // the longest a retrying client waited for one operation
}

// outage is a time without any acknowledged write.
type outage struct{ from, to time.Time }

// minOutage is the shortest time without acknowledged writes recorded as
// an outage; shorter ones are ordinary pauses between writes.
const minOutage = 250 * time.Millisecond

func newLedger() *ledger {
	return &ledger{created: map[string]string{}, approved: map[string]uint64{}, toApprove: make(chan *ordersv1.Order, 4096)}
}

// acked notes an acknowledged write that took waited from its first attempt.
func (l *ledger) acked(stats *OpStats, waited time.Duration) {
	now := time.Now()
	stats.Acknowledged++
	if !l.lastAck.IsZero() {
		gap := now.Sub(l.lastAck)
		l.longestNoAck = max(l.longestNoAck, gap)
		if gap >= minOutage {
			l.outages = append(l.outages, outage{l.lastAck, now})
		}
	}
	l.lastAck = now
	l.longestWait = max(l.longestWait, waited)
}

func (l *ledger) unexpected(stats *OpStats, what string, err error) {
	stats.Unexpected++
	if len(l.errors) < 10 {
		l.errors = append(l.errors, fmt.Sprintf("%s %s: %v", time.Now().Format(time.TimeOnly), what, err))
	}
}

// retryable says whether a failed call may succeed when sent again with
// the same request id: the service was unreachable, busy, or too slow.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// writers run the write workload: creators create orders, approvers approve
// acknowledged ones. Each operation is retried with the same request id,
// on any process, until it succeeds or finishBy passes.
type writers struct {
	c        *cluster
	l        *ledger
	traffic  *traffic
	callTime time.Duration
	pace     time.Duration // pause between one worker's operations
}

// call runs one operation until it is acknowledged, retrying retryable
// failures on random processes, and returns the last error if it never was.
func (w *writers) call(finishBy time.Time, stats *OpStats, what string, do func(context.Context, ordersv1.OrderServiceClient, ...grpc.CallOption) error) error {
	start := time.Now()
	for {
		client, name := w.c.pick()
		var answered peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), w.callTime)
		err := do(ctx, client, grpc.Peer(&answered))
		cancel()
		if name == "" { // balanced: the process the balancer picked
			name = w.c.nameOf(answered.Addr)
		}
		w.traffic.record(name, err)
		w.l.mu.Lock()
		switch {
		case err == nil:
			w.l.acked(stats, time.Since(start))
		case !retryable(err):
			w.l.unexpected(stats, what+" on "+name, err)
		default:
			stats.RetriedCalls++
		}
		w.l.mu.Unlock()
		if err == nil || !retryable(err) || time.Now().After(finishBy) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// create makes orders until ctx ends; an operation begun then goes on
// until finishBy.
func (w *writers) create(ctx context.Context, worker int, finishBy func() time.Time) {
	for i := 0; ctx.Err() == nil; i++ {
		requestID := fmt.Sprintf("create-%d-%d", worker, i)
		req := &ordersv1.CreateOrderRequest{RequestId: requestID, CustomerId: fmt.Sprintf("customer-%d", worker),
			CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "sku-1", Quantity: 1 + int64(i%3), UnitPriceMinor: 1250}}}
		w.l.mu.Lock()
		w.l.create.Attempted++
		w.l.mu.Unlock()
		var order *ordersv1.Order
		err := w.call(finishBy(), &w.l.create, "create "+requestID, func(ctx context.Context, client ordersv1.OrderServiceClient, opts ...grpc.CallOption) error {
			res, err := client.CreateOrder(ctx, req, opts...)
			order = res.GetOrder()
			return err
		})
		if err == nil {
			w.l.mu.Lock()
			w.l.created[requestID] = order.GetOrderId()
			w.l.mu.Unlock()
			select {
			case w.l.toApprove <- order:
			default: // approvers are behind; this order stays created
			}
		}
		time.Sleep(w.pace)
	}
}

// approve approves acknowledged orders, at the revision they were created
// at, until ctx ends.
func (w *writers) approve(ctx context.Context, finishBy func() time.Time) {
	for {
		var order *ordersv1.Order
		select {
		case order = <-w.l.toApprove:
		case <-ctx.Done():
			return
		}
		req := &ordersv1.ApproveOrderRequest{OrderId: order.GetOrderId(), RequestId: "approve-" + order.GetOrderId(),
			ExpectedRevision: order.GetRevision()}
		w.l.mu.Lock()
		w.l.approve.Attempted++
		w.l.mu.Unlock()
		var approved *ordersv1.Order
		err := w.call(finishBy(), &w.l.approve, "approve "+order.GetOrderId(), func(ctx context.Context, client ordersv1.OrderServiceClient, opts ...grpc.CallOption) error {
			res, err := client.ApproveOrder(ctx, req, opts...)
			approved = res.GetOrder()
			return err
		})
		if err == nil {
			w.l.mu.Lock()
			w.l.approved[order.GetOrderId()] = approved.GetRevision()
			w.l.mu.Unlock()
		}
		time.Sleep(w.pace)
	}
}

// pick returns the client for a write call and the name of the process
// it calls: with Random balancing any process, running or not, as a
// client behind a blind load balancer might reach any of them; with
// Weighted the balanced client, and no name (the balancer picks).
func (c *cluster) pick() (ordersv1.OrderServiceClient, string) {
	if c.balancedClient != nil {
		return c.balancedClient, ""
	}
	p := c.random()
	return p.client, p.name
}

// random picks any process, running or not, as a client behind a load
// balancer might reach any of them.
func (c *cluster) random() *process {
	all := c.all()
	return all[rand.IntN(len(all))]
}

// randomReplica picks a stateless replica. The streams are read through
// the replicas, so that the faults that hit only replicas (a kill, a cut
// link) hit the streams too; they also feel the nodes' faults through
// NATS.
func (c *cluster) randomReplica() *process {
	return c.replicas[rand.IntN(len(c.replicas))]
}
