package systemtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
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

// clusterNode is one ordersd node of an embedded three-node cluster, run
// in the test process (startCluster) or as a child process
// (startChildCluster).
type clusterNode struct {
	name string
	addr string                                        // gRPC
	nats func(opts ...nats.Option) (*nats.Conn, error) // a connection to the node's NATS server
	// natsURL and natsToken are where and how nats connects, for a
	// command such as `ordersd rebalance`; empty where nats goes elsewhere.
	natsURL, natsToken string
	stop               func() error // stops it in order, as SIGTERM does
	kill               func() error // SIGKILL; only for child processes
	client             ordersv1.OrderServiceClient

	// restart starts a child process again on the same data directory,
	// with the same flags, once it has exited, and waits until it serves
	// (on a port of its own: addr and client stay the first process's).
	restart func()
}

// clusterArgs are the flags of node i of a three-node cluster on routes,
// with mutual TLS between them (routeTLS).
func clusterArgs(i int, routes []string, keyFile string, routeTLS [][]string) []string {
	var peers []string
	for j, r := range routes {
		if j != i {
			peers = append(peers, r)
		}
	}
	return append([]string{"--review=false", "--replicas", "3", "--nats-timeout", clusterNATSTimeout.String(), "--server-name", fmt.Sprintf("n%d", i+1),
		"--ack-token-key-file", keyFile, "--cluster-name", "orders", "--cluster-listen", routes[i], "--cluster-routes", strings.Join(peers, ",")},
		routeTLS[i]...)
}

// newRouteTLS makes a cluster CA and a route certificate for each of n
// nodes: the flags --cluster-cert, --cluster-key and --cluster-ca of each.
func newRouteTLS(t *testing.T, n int) [][]string {
	t.Helper()
	dir := t.TempDir()
	ca := testsupport.NewCA(t, "orders cluster")
	caFile := ca.WriteCA(t, dir, "cluster-ca.crt")
	flags := make([][]string, n)
	for i := range n {
		cert, key := ca.Issue(t, testsupport.Leaf{CommonName: fmt.Sprintf("n%d", i+1)}).Write(t, dir, fmt.Sprintf("route-n%d", i+1))
		flags[i] = []string{"--cluster-cert", cert, "--cluster-key", key, "--cluster-ca", caFile}
	}
	return flags
}

// connectCluster connects a client to every node and waits until each
// serves (forming a cluster takes a while on a loaded machine).
func connectCluster(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	for _, n := range nodes {
		conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		n.client = ordersv1.NewOrderServiceClient(conn)
		waitServingWithin(t, healthpb.NewHealthClient(conn), 60*time.Second)
	}
}

// startChildCluster runs the three nodes of startCluster as child
// processes (this test binary, see TestMain), so that one can be killed,
// each with the flags of clusterArgs and then extra.
// Each opens its NATS server to the test on a loopback port with a token.
func startChildCluster(t *testing.T, extra ...string) []*clusterNode {
	t.Helper()
	ports := freePorts(t, 6)
	routes, natsAddrs := ports[:3], ports[3:]
	keyFile, routeTLS := testsupport.AckKeyFile(t), newRouteTLS(t, 3)
	nodes := make([]*clusterNode, 3)
	for i := range 3 {
		const token = "inspect"
		dataDir := t.TempDir()
		args := append(append(clusterArgs(i, routes, keyFile, routeTLS), "--nats-listen", natsAddrs[i], "--nats-listen-token", token,
			"--nats-listen-access", "full"), extra...) // the test moves leaders
		var child atomic.Pointer[childOrdersd]
		child.Store(spawnChild(t, dataDir, args...))
		natsURL := "nats://" + natsAddrs[i]
		nodes[i] = &clusterNode{
			name: fmt.Sprintf("n%d", i+1), addr: child.Load().addr, natsURL: natsURL, natsToken: token,
			nats: func(opts ...nats.Option) (*nats.Conn, error) {
				return nats.Connect(natsURL, append([]nats.Option{nats.Token(token)}, opts...)...)
			},
			stop:    func() error { return child.Load().signal(syscall.SIGTERM) },
			kill:    func() error { return child.Load().signal(syscall.SIGKILL) },
			restart: func() { child.Store(startChildWithin(t, 60*time.Second, dataDir, args...)) },
		}
	}
	connectCluster(t, nodes)
	return nodes
}

// startChildWithin is startChild, waiting up to d for the child to serve
// (a node that rejoins its cluster takes a while on a loaded machine).
func startChildWithin(t *testing.T, d time.Duration, dataDir string, flags ...string) *childOrdersd {
	t.Helper()
	c := spawnChild(t, dataDir, flags...)
	waitServingWithin(t, healthpb.NewHealthClient(c.conn), d)
	return c
}

// startCluster runs three ordersd nodes whose embedded NATS servers form
// one JetStream cluster over mutual TLS routes, with the stream ORDERS on all three (R3). The
// nodes share one ack token key, so a token from any node acks on any.
func startCluster(t *testing.T) []*clusterNode {
	t.Helper()
	routes := freePorts(t, 3)
	keyFile, routeTLS := testsupport.AckKeyFile(t), newRouteTLS(t, 3)
	nodes := make([]*clusterNode, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ready, stop := runOrdersd(t, t.TempDir(), clusterArgs(i, routes, keyFile, routeTLS)...)
			nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), addr: ready.GRPCAddr.String(), nats: ready.ConnectNATS, stop: stop}
		})
	}
	wg.Wait()
	connectCluster(t, nodes)
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
// others. Then the stream leader's node is stopped in order (as SIGTERM
// does) while clients on the two others create orders, approve created
// ones and consume them from a work queue whose consumer leader is on the
// same node; see loseStreamLeader for what is checked.
func TestStreamLeaderLostInThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	began := time.Now()
	nodes := startCluster(t)
	loseStreamLeader(t, nodes, began, "stopped", func(n *clusterNode) error { return n.stop() })
}

// The same as TestStreamLeaderLostInThreeNodeCluster, but the stream
// leader's node is a child process and dies at once (SIGKILL): no hand-over
// of its leaderships, so the survivors elect new leaders after nats-server's
// election timeout (4 to 9 s). Calls made meanwhile fail with UNAVAILABLE
// or DEADLINE_EXCEEDED within their deadline (some must: the kill has to
// hit something), nothing acknowledged is lost, the stream gets a new
// leader, and the survivors serve again without a restart.
func TestStreamLeaderKilledInThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster of ordersd processes")
	}
	began := time.Now()
	nodes := startChildCluster(t)
	stats := loseStreamLeader(t, nodes, began, "killed", func(n *clusterNode) error { return n.kill() })
	if len(stats.retriedAttempts()) == 0 {
		t.Error("no call failed while the stream had no leader: the kill hit nothing")
	}
}

// loseStreamLeader checks a cluster through the loss of its stream
// leader's node (lose stops or kills it) while clients on the two
// others create, approve and consume:
//   - every call returns OK or UNAVAILABLE (DEADLINE_EXCEEDED at worst)
//     within its deadline, and a retry with the same request id stores
//     nothing twice;
//   - the survivors recover without any restart: calls made after the
//     loss succeed, and the stream has a new leader;
//   - no acknowledged create or approval is lost;
//   - the work queue client, reopening its stream with UNAVAILABLE on
//     either survivor and acking the tokens it holds there, receives every
//     created event (at least once), and never one whose ack was confirmed.
//
// It returns the clients' call statistics.
func loseStreamLeader(t *testing.T, nodes []*clusterNode, began time.Time, how string, lose func(*clusterNode) error) *callStats {
	t.Helper()
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
	checkListReadsYourWrites(ctx, t, nodes)
	checkPageTokensWorkOnEveryNode(ctx, t, nodes)

	// Which node leads the stream?
	nc, err := nodes[0].nats()
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
	nc, err = survivors[0].nats()
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
	if err := lose(leader); err != nil {
		t.Fatalf("the leader's node, %s: %v", how, err)
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
	t.Logf("cluster formed in %v; leader %s (of the stream and the consumer) %s in %v; first create and approval made after that acknowledged within %v",
		formed.Round(time.Millisecond), leaderName, how, load.lossAt().Sub(killStart).Round(time.Millisecond), recoveredIn.Round(time.Millisecond))

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
	t.Logf("work queue: %d deliveries of %d events, %d redeliveries (%d events), stream reopened %d times, acks %d confirmed / %d retried unconfirmed / %d given up to redelivery, longest silence %v",
		q.deliveries, q.events, q.deliveries-q.events, q.redelivered, q.reopens, q.confirmed, q.unconfirmed, q.givenUp, q.longestSilence.Round(time.Millisecond))
	t.Logf("work queue: %d deliveries of events whose ack was confirmed %v", len(q.afterConfirmed), q.afterConfirmed)
	slowest := stats.slowestCall()
	t.Logf("retried attempts %v; slowest call %s %v (deadline %v); whole test %v", stats.retriedAttempts(),
		slowest.rpc, slowest.took.Round(time.Millisecond), slowest.deadline, time.Since(began).Round(time.Millisecond))
	// The client's own deadline ends every call; what this tells apart is
	// a call that hangs (tens of seconds) from one that ends on time. The
	// margin is for the test process itself: with three race-enabled nodes
	// on two loaded cores, a deadline was seen to fire 1.3 s late.
	if slowest.took > slowest.deadline+3*time.Second {
		t.Errorf("%s took %v, past its %v deadline", slowest.rpc, slowest.took, slowest.deadline)
	}
	return stats
}

const (
	// callDeadline is the deadline of the unary calls in the cluster tests
	// (AckOrders has ackCallDeadline).
	callDeadline = 5 * time.Second
	// clusterNATSTimeout is the --nats-timeout of the cluster nodes: the
	// longest any JetStream operation waits before its call fails.
	clusterNATSTimeout = 5 * time.Second
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
