package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/node"
)

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lis []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis = append(lis, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range lis {
		l.Close()
	}
	return addrs
}

// clusterNode is one ordersd node of an embedded three-node cluster.
type clusterNode struct {
	name   string
	ready  node.Ready
	stop   func() error
	client ordersv1.OrderServiceClient
}

// startCluster runs three ordersd nodes whose embedded NATS servers form
// one JetStream cluster, with the stream ORDERS on all three (R3). The
// nodes share one ack token key, so a token from any node acks on any.
func startCluster(t *testing.T) []*clusterNode {
	t.Helper()
	routes := freePorts(t, 3)
	keyFile := filepath.Join(t.TempDir(), "ack.key")
	if err := os.WriteFile(keyFile, []byte(rand.Text()+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*clusterNode, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready, stop := runOrdersd(t, t.TempDir(), "--review=false", "--replicas", "3", "--server-name", name, "--ack-token-key-file", keyFile,
				"--cluster-name", "orders", "--cluster-listen", routes[i], "--cluster-routes", strings.Join(peers, ","))
			nodes[i] = &clusterNode{name: name, ready: ready, stop: stop}
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		conn, err := grpc.NewClient(n.ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		n.client = ordersv1.NewOrderServiceClient(conn)
		waitServingWithin(t, healthpb.NewHealthClient(conn), 60*time.Second)
	}
	return nodes
}

func waitServingWithin(t *testing.T, health healthpb.HealthClient, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING after %v: %v %v", d, res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// In a three-node embedded cluster, a write on one node is read on the
// others. Then the stream leader's node dies while clients on the two
// others create orders, approve created ones and consume them from a work
// queue whose consumer leader is on the same dying node:
//   - every call returns OK or UNAVAILABLE (DEADLINE_EXCEEDED at worst)
//     within its deadline, and a retry with the same request id stores
//     nothing twice;
//   - the survivors recover without any restart: calls made after the
//     loss succeed, and the stream has a new leader;
//   - no acknowledged create or approval is lost;
//   - the work queue client, reopening its stream with UNAVAILABLE on
//     either survivor and acking the tokens it holds there, receives every
//     created event (at least once), and never one whose ack was confirmed.
func TestStreamLeaderLostInThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	began := time.Now()
	nodes := startCluster(t)
	formed := time.Since(began)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first, err := nodes[0].client.CreateOrder(ctx, newClusterOrder("first"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		got, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: first.GetOrder().GetOrderId()})
		if err != nil || got.GetOrder().GetRevision() != first.GetOrder().GetRevision() {
			t.Fatalf("read on %s after a write on n1: %v, %v", n.name, got, err)
		}
	}

	// Which node leads the stream?
	nc, err := nodes[0].ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	leaderName := stream.CachedInfo().Cluster.Leader
	nc.Close()
	var leader *clusterNode
	var survivors []*clusterNode
	for _, n := range nodes {
		if n.name == leaderName {
			leader = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if leader == nil || len(survivors) != 2 {
		t.Fatalf("stream leader %q is none of the nodes", leaderName)
	}
	// A NATS connection to a survivor, to arrange and inspect the cluster.
	nc, err = survivors[0].ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)

	// The work queue client starts on a survivor; once it has the first
	// event, its consumer's leader moves to the node that will die, so
	// that the loss takes both leaders at once.
	stats := newCallStats()
	queue := newWorkQueueClient(t, stats, survivors)
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	consuming := queue.start(consumeCtx)
	defer func() {
		stopConsuming()
		consuming.Wait()
	}()
	if !waitFor(10*time.Second, func() bool { return queue.received(first.GetOrder().GetRevision()) }) {
		t.Fatal("the work queue client did not receive the first order within 10s")
	}
	if err := moveConsumerLeader(ctx, nc, js, queue.consumer, leaderName); err != nil {
		t.Fatal(err)
	}

	// Clients on the survivors create and approve orders, retrying each
	// failed call with the same request id, while the leader's node dies.
	load := newClusterLoad(t, stats, survivors)
	loading := load.start(ctx, 4, 3)
	defer func() {
		load.stop()
		loading.Wait()
	}()
	time.Sleep(time.Second)
	killStart := time.Now()
	if err := leader.stop(); err != nil {
		t.Fatalf("stopping the leader's node: %v", err)
	}
	load.lost(time.Now())
	recovered := waitFor(30*time.Second, func() bool {
		return load.createsAfterLoss.Load() > 0 && load.approvalsAfterLoss.Load() > 0
	})
	recoveredIn := time.Since(killStart)
	if !recovered {
		t.Errorf("no create and approval made after the loss succeeded within 30s: the survivors did not recover")
	}
	time.Sleep(time.Second) // a little more load on the new leader
	load.stop()
	loading.Wait()
	t.Logf("cluster formed in %v; leader %s (of the stream and the consumer) stopped in %v; first create and approval made after that acknowledged within %v",
		formed.Round(time.Millisecond), leaderName, load.lossAt().Sub(killStart).Round(time.Millisecond), recoveredIn.Round(time.Millisecond))

	// Every acknowledged create and approval is there, on both survivors.
	load.checkStored(ctx, t)

	// Retried once more, now that all is calm, acknowledged requests are
	// answered as duplicates of the original, and store nothing.
	load.checkRetries(ctx, t, 10)

	// No request id, of a create or an approval, stored two events.
	created := map[uint64]bool{} // stream sequences of created events
	byRequest := map[string]int{}
	err = walkStream(ctx, js, func(msg jetstream.Msg) error {
		byRequest[msg.Headers().Get("Ordersd-Request-Id")]++
		if strings.HasPrefix(msg.Subject(), "ORDERS.created.") {
			meta, err := msg.Metadata()
			if err != nil {
				return err
			}
			created[meta.Sequence.Stream] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for requestID, n := range byRequest {
		if n != 1 {
			t.Errorf("request %q stored %d events", requestID, n)
		}
	}
	for _, requestID := range load.acknowledgedRequests() {
		if byRequest[requestID] != 1 {
			t.Errorf("acknowledged request %s: %d events stored", requestID, byRequest[requestID])
		}
	}

	// The work queue client receives every created event, at least once.
	if !waitFor(20*time.Second, func() bool { return queue.receivedAll(created) }) {
		missing := queue.missing(created)
		t.Errorf("the work queue client never received %d of %d created events, such as sequences %v",
			len(missing), len(created), missing[:min(len(missing), 10)])
	}
	stopConsuming()
	consuming.Wait()

	stream, err = js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	newLeader := stream.CachedInfo().Cluster.Leader
	if newLeader == leaderName || newLeader == "" {
		t.Errorf("stream leader after the loss: %q", newLeader)
	}
	cons, err := js.Consumer(ctx, "ORDERS", queue.consumer)
	if err != nil {
		t.Fatal(err)
	}
	if l := cons.CachedInfo().Cluster.Leader; l == leaderName || l == "" {
		t.Errorf("consumer leader after the loss: %q", l)
	}
	ci := cons.CachedInfo()
	t.Logf("consumer %s: delivered up to sequence %d, ack floor %d, %d awaiting acks, %d redelivered, %d pending",
		queue.consumer, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered, ci.NumPending)

	creates, approvals, duplicates := load.counts()
	q := queue.figures()
	t.Logf("acknowledged: %d creates, %d approvals (%d answered as duplicates of an earlier attempt); %d events in the stream, %d created; new leaders: stream %s, consumer %s",
		creates, approvals, duplicates, stream.CachedInfo().State.Msgs, len(created), newLeader, cons.CachedInfo().Cluster.Leader)
	t.Logf("work queue: %d deliveries of %d events, %d redeliveries (%d events), stream reopened %d times, acks %d confirmed / %d retried unconfirmed / %d given up to redelivery / %d collapsed into a newer token of their event, longest silence %v",
		q.deliveries, q.events, q.deliveries-q.events, q.redelivered, q.reopens, q.confirmed, q.unconfirmed, q.givenUp, q.collapsed, q.longestSilence.Round(time.Millisecond))
	slowest := stats.slowestCall()
	t.Logf("retried attempts %v; slowest call %s %v (deadline %v); whole test %v", stats.retriedAttempts(),
		slowest.rpc, slowest.took.Round(time.Millisecond), slowest.deadline, time.Since(began).Round(time.Millisecond))
	if slowest.took > slowest.deadline+time.Second {
		t.Errorf("%s took %v, past its %v deadline", slowest.rpc, slowest.took, slowest.deadline)
	}
}

const (
	// callDeadline is the deadline of the unary calls in the cluster tests
	// (AckOrders has ackCallDeadline).
	callDeadline = 5 * time.Second
	// maxAttempts bounds the attempts of one request (about 30 × 5s at worst).
	maxAttempts = 30
)

func newClusterOrder(requestID string) *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{RequestId: requestID, CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}}
}

// waitFor polls cond every 50ms until it holds or d has passed, and says
// whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

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
					got, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: want.GetOrderId()})
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

	mu         sync.Mutex           // protects the fields below
	deliveries map[uint64]int       // stream sequence → times delivered
	ackedAt    map[uint64]time.Time // stream sequence → when its ack was first confirmed
	tally      workQueueFigures
}

// ackable is one delivery to ack.
type ackable struct {
	seq   uint64
	token string
}

// workQueueFigures are what a workQueueClient did.
type workQueueFigures struct {
	events, deliveries, redelivered int // distinct events, deliveries, events delivered more than once
	reopens                         int // streams reopened after UNAVAILABLE
	confirmed, unconfirmed, givenUp int // acks confirmed; acks unconfirmed and retried; acks given up, left to redelivery
	collapsed                       int // tokens not sent: a newer token of the same event was in the batch
	longestSilence                  time.Duration
}

const (
	// queueHeartbeat is the work queue stream's heartbeat interval.
	queueHeartbeat = time.Second
	// maxQueueSilence is how long a work queue stream may send nothing
	// before it counts as hung: the setup of a stream (binding to the
	// consumer) may take ordersd up to 10s, then heartbeats come every
	// queueHeartbeat at the latest.
	maxQueueSilence = 12 * time.Second
	// queueAckWait is the consumer's ack wait: short, so that deliveries
	// whose acks were lost come back within the test.
	queueAckWait = 3 * time.Second
	// ackCallDeadline is the deadline of AckOrders: above ordersd's
	// --nats-timeout (5s), the longest it waits for JetStream to confirm
	// acks, so that the answer, which says which acks were confirmed,
	// arrives before the deadline.
	ackCallDeadline = 7 * time.Second
	// maxAckAttempts bounds the attempts to have one ack confirmed; after
	// them it is left to redelivery.
	maxAckAttempts = 3
)

func newWorkQueueClient(t *testing.T, stats *callStats, nodes []*clusterNode) *workQueueClient {
	return &workQueueClient{t: t, stats: stats, nodes: nodes, consumer: "leader-loss", tokens: make(chan ackable, 1<<16),
		deliveries: map[uint64]int{}, ackedAt: map[uint64]time.Time{}}
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
		q.tokens <- ackable{seq: res.GetEvent().GetSequence(), token: res.GetAckToken()}
	}
}

// delivered records one delivery. A delivery of an event whose ack was
// confirmed well before means the consumer went back: JetStream replicates
// an ack before it confirms it, so no leader change may undo it. (Within
// ackRace of the confirmation, the redelivery may have been on its way.)
func (q *workQueueClient) delivered(node *clusterNode, res *ordersv1.ConsumeOrdersResponse) {
	const ackRace = 2 * time.Second
	seq := res.GetEvent().GetSequence()
	if status := res.GetEvent().GetOrder().GetStatus(); status != ordersv1.OrderStatus_ORDER_STATUS_CREATED {
		q.t.Errorf("the work queue of created events delivered a %v event (sequence %d)", status, seq)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deliveries[seq]++
	if acked, ok := q.ackedAt[seq]; ok && time.Since(acked) > ackRace {
		q.t.Errorf("%s delivered sequence %d (attempt %d) again %v after its ack was confirmed: the consumer did not resume where it was",
			node.name, seq, res.GetDeliveryAttempt(), time.Since(acked).Round(time.Millisecond))
	}
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
					if _, ok := q.ackedAt[batch[i].seq]; !ok {
						q.ackedAt[batch[i].seq] = time.Now()
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
// that are waiting; false when there will be no more. A batch holds one
// token per event, the newest, and counts the others as collapsed. This
// works around a fault of AckOrders on a replicated consumer: of two tokens
// of one event (two deliveries of it) in one call, only one is ever
// confirmed (nats-server keeps one pending ack reply per stream sequence,
// and ordersd sends both acks), so the call waits ordersd's whole
// --nats-timeout and reports the other unconfirmed, on every retry.
func (q *workQueueClient) nextBatch(n int) ([]ackable, bool) {
	a, ok := <-q.tokens
	if !ok {
		return nil, false
	}
	batch := []ackable{a}
	index := map[uint64]int{a.seq: 0} // stream sequence → its place in batch
	for len(batch) < n {
		select {
		case a, ok := <-q.tokens:
			if !ok {
				return batch, true
			}
			if i, dup := index[a.seq]; dup {
				batch[i] = a
				q.mu.Lock()
				q.tally.collapsed++
				q.mu.Unlock()
				continue
			}
			index[a.seq] = len(batch)
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
