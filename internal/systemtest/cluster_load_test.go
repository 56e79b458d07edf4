package systemtest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// callStats measures the unary calls of a test: the slowest (the one that
// came closest to its deadline, or went furthest past it), and how many
// attempts of each RPC failed with UNAVAILABLE or DEADLINE_EXCEEDED and were
// retried.
type callStats struct {
	mu           sync.Mutex // protects the fields below
	slowest      timedCall
	retriedByRPC map[string]int // "<rpc> <code>" → attempts
}

// timedCall is one attempt of an RPC, timed.
type timedCall struct {
	rpc            string
	took, deadline time.Duration
}

func newCallStats() *callStats {
	return &callStats{retriedByRPC: map[string]int{}}
}

// retry makes call, each attempt with a fresh deadline, until it
// succeeds; it retries UNAVAILABLE and DEADLINE_EXCEEDED, the codes that
// leave a write's outcome unknown (the caller sends the same request, so
// the same request id, every time). It returns when the successful attempt
// began.
func (s *callStats) retry(ctx context.Context, rpc string, deadline time.Duration, call func(context.Context) error) (time.Time, error) {
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		err := call(callCtx)
		took := time.Since(start)
		cancel()
		s.mu.Lock()
		if s.slowest.rpc == "" || took-deadline > s.slowest.took-s.slowest.deadline {
			s.slowest = timedCall{rpc: rpc, took: took, deadline: deadline}
		}
		s.mu.Unlock()
		if err == nil {
			return start, nil
		}
		c := status.Code(err)
		if c != codes.Unavailable && c != codes.DeadlineExceeded || attempt == maxAttempts || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("%s, attempt %d: %w", rpc, attempt, err)
		}
		s.mu.Lock()
		s.retriedByRPC[rpc+" "+c.String()]++
		s.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *callStats) slowestCall() timedCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slowest
}

func (s *callStats) retriedAttempts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.retriedByRPC)
}

// clusterLoad is the clients that create orders and approve created ones
// on the surviving nodes of a cluster, and what they were told.
type clusterLoad struct {
	t         *testing.T
	stats     *callStats
	nodes     []*clusterNode
	toApprove chan *ordersv1.Order // created orders, oldest first
	stopped   chan struct{}        // closed when the clients are to stop
	stopOnce  sync.Once

	// createsAfterLoss and approvalsAfterLoss count the calls acknowledged
	// whose successful attempt began after the leader's node was gone.
	createsAfterLoss, approvalsAfterLoss atomic.Int64

	mu         sync.Mutex                 // protects the fields below
	lossTime   time.Time                  // when the leader's node was gone; zero before
	creates    map[string]*ordersv1.Order // create request id → order as acknowledged
	approvals  map[string]approval        // order id → its acknowledged approval
	duplicates int                        // approvals acknowledged with duplicate set
}

// approval is an acknowledged ApproveOrder call.
type approval struct {
	req   *ordersv1.ApproveOrderRequest
	order *ordersv1.Order // as answered
}

func newClusterLoad(t *testing.T, stats *callStats, nodes []*clusterNode) *clusterLoad {
	return &clusterLoad{t: t, stats: stats, nodes: nodes, toApprove: make(chan *ordersv1.Order, 1<<16), stopped: make(chan struct{}),
		creates: map[string]*ordersv1.Order{}, approvals: map[string]approval{}}
}

// start runs creators and approvers, spread over the nodes, until stop.
func (l *clusterLoad) start(ctx context.Context, creators, approvers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range creators {
		wg.Go(func() { l.create(ctx, w, l.nodes[w%len(l.nodes)].client) })
	}
	for w := range approvers {
		wg.Go(func() { l.approve(ctx, l.nodes[w%len(l.nodes)].client) })
	}
	return &wg
}

func (l *clusterLoad) stop() { l.stopOnce.Do(func() { close(l.stopped) }) }

func (l *clusterLoad) isStopped() bool {
	select {
	case <-l.stopped:
		return true
	default:
		return false
	}
}

func (l *clusterLoad) lost(at time.Time) {
	l.mu.Lock()
	l.lossTime = at
	l.mu.Unlock()
}

func (l *clusterLoad) lossAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lossTime
}

func (l *clusterLoad) afterLoss(start time.Time) bool {
	loss := l.lossAt()
	return !loss.IsZero() && start.After(loss)
}

// create places orders one after the other, each retried with its request
// id until it is acknowledged, and hands them to the approvers.
func (l *clusterLoad) create(ctx context.Context, w int, client ordersv1.OrderServiceClient) {
	for i := 0; !l.isStopped(); i++ {
		req := newClusterOrder(fmt.Sprintf("w%d-%d", w, i))
		var res *ordersv1.CreateOrderResponse
		start, err := l.stats.retry(ctx, "CreateOrder", callDeadline, func(ctx context.Context) (err error) {
			res, err = client.CreateOrder(ctx, req)
			return err
		})
		if err != nil {
			l.t.Errorf("create %s: %v; want OK, or UNAVAILABLE until a retry succeeds", req.GetRequestId(), err)
			return
		}
		if l.afterLoss(start) {
			l.createsAfterLoss.Add(1)
		}
		l.mu.Lock()
		l.creates[req.GetRequestId()] = res.GetOrder()
		l.mu.Unlock()
		select {
		case l.toApprove <- res.GetOrder():
		default: // the approvers are far behind: this one stays created
		}
	}
}

// approveRequestID is the request id of an order's approval.
func approveRequestID(orderID string) string { return "approve-" + orderID }

// approve approves created orders, based on their acknowledged revision,
// each retried with its request id until it is acknowledged. A retry of an
// approval that was stored must answer the original result, as a duplicate.
func (l *clusterLoad) approve(ctx context.Context, client ordersv1.OrderServiceClient) {
	for {
		var order *ordersv1.Order
		select {
		case order = <-l.toApprove:
		case <-l.stopped:
			return
		}
		req := &ordersv1.ApproveOrderRequest{OrderId: order.GetOrderId(), RequestId: approveRequestID(order.GetOrderId()), ExpectedRevision: order.GetRevision()}
		attempts := 0
		var res *ordersv1.ApproveOrderResponse
		start, err := l.stats.retry(ctx, "ApproveOrder", callDeadline, func(ctx context.Context) (err error) {
			attempts++
			res, err = client.ApproveOrder(ctx, req)
			return err
		})
		switch {
		case err != nil:
			l.t.Errorf("approve %s: %v; want OK, or UNAVAILABLE until a retry succeeds", order.GetOrderId(), err)
			return
		case res.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED || res.GetOrder().GetRevision() <= order.GetRevision():
			l.t.Errorf("approve %s (revision %d): answered %v", order.GetOrderId(), order.GetRevision(), res)
		case res.GetDuplicate() && attempts == 1:
			l.t.Errorf("approve %s: the first attempt was answered as a duplicate", order.GetOrderId())
		}
		if l.afterLoss(start) {
			l.approvalsAfterLoss.Add(1)
		}
		l.mu.Lock()
		l.approvals[order.GetOrderId()] = approval{req: req, order: res.GetOrder()}
		if res.GetDuplicate() {
			l.duplicates++
		}
		l.mu.Unlock()
	}
}

func (l *clusterLoad) counts() (creates, approvals, duplicates int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.creates), len(l.approvals), l.duplicates
}

// acknowledgedRequests lists the request ids of every acknowledged create
// and approval.
func (l *clusterLoad) acknowledgedRequests() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for requestID := range l.creates {
		ids = append(ids, requestID)
	}
	for orderID := range l.approvals {
		ids = append(ids, approveRequestID(orderID))
	}
	return ids
}

// checkRetries sends n acknowledged creates and n acknowledged approvals
// again, the same requests (so the same request ids), on alternate nodes:
// each must be answered as a duplicate with the original result.
func (l *clusterLoad) checkRetries(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for requestID, want := range l.creates {
		if i++; i > n {
			break
		}
		res, err := l.nodes[i%len(l.nodes)].client.CreateOrder(ctx, newClusterOrder(requestID))
		if err != nil || !res.GetDuplicate() || res.GetOrder().GetOrderId() != want.GetOrderId() {
			t.Errorf("create %s retried after it was acknowledged (order %s): %v, %v; want the order as a duplicate", requestID, want.GetOrderId(), res, err)
		}
	}
	i = 0
	for orderID, a := range l.approvals {
		if i++; i > n {
			break
		}
		res, err := l.nodes[i%len(l.nodes)].client.ApproveOrder(ctx, a.req)
		if err != nil || !res.GetDuplicate() || res.GetOrder().GetRevision() != a.order.GetRevision() {
			t.Errorf("approval of %s retried after it was acknowledged at revision %d: %v, %v; want it again as a duplicate", orderID, a.order.GetRevision(), res, err)
		}
	}
}

// settleWithin bounds how long a check after the faults retries a read
// that finds JetStream unavailable: the cluster may still elect a leader
// (of the stream, or of JetStream's meta layer) after the load stopped,
// and UNAVAILABLE promises only that the call may be retried.
const settleWithin = 30 * time.Second

// readSettled reads an order, retrying while JetStream is unavailable for
// at most settleWithin; any other answer is returned at once.
func readSettled(ctx context.Context, client ordersv1.OrderServiceClient, orderID string) (*ordersv1.GetOrderResponse, error) {
	deadline := time.Now().Add(settleWithin)
	for {
		got, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: orderID})
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkStored reads every acknowledged order on every node (after the load
// stopped): an approved one is APPROVED at its acknowledged revision or
// later, any other one is exactly as created.
func (l *clusterLoad) checkStored(ctx context.Context, t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	orders := make(chan *ordersv1.Order)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for created := range orders {
				want := created
				a, approved := l.approvals[created.GetOrderId()]
				if approved {
					want = a.order
				}
				for _, n := range l.nodes {
					got, err := readSettled(ctx, n.client, want.GetOrderId())
					if err != nil || got.GetOrder().GetStatus() != want.GetStatus() || got.GetOrder().GetRevision() < want.GetRevision() ||
						!approved && got.GetOrder().GetRevision() != want.GetRevision() {
						t.Errorf("acknowledged order %s (%v at revision %d) on %s: %v, %v",
							want.GetOrderId(), want.GetStatus(), want.GetRevision(), n.name, got, err)
					}
				}
			}
		})
	}
	for _, created := range l.creates {
		orders <- created
	}
	close(orders)
	wg.Wait()
}
