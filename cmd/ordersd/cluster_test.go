package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

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
// one JetStream cluster, with the stream ORDERS on all three (R3).
func startCluster(t *testing.T) []*clusterNode {
	t.Helper()
	routes := freePorts(t, 3)
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
			ready, stop := runOrdersd(t, t.TempDir(), "--review=false", "--replicas", "3", "--server-name", name,
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
// others; when the stream leader's node dies while clients create orders
// (retrying failures with the same request id), calls fail with
// UNAVAILABLE or succeed within their deadline, the cluster elects a new
// leader without any restart, no acknowledged write is lost, and no
// request id stored two orders.
func TestStreamLeaderLostInThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	newOrder := func(requestID string) *ordersv1.CreateOrderRequest {
		return &ordersv1.CreateOrderRequest{RequestId: requestID, CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}}
	}
	first, err := nodes[0].client.CreateOrder(ctx, newOrder("first"))
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
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	leaderName := stream.CachedInfo().Cluster.Leader
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
	nc.Close()

	// Clients on the surviving nodes create orders, retrying each failed
	// call with the same request id, while the leader's node dies.
	const callDeadline = 5 * time.Second
	var (
		mu        sync.Mutex
		acked     = map[string]*ordersv1.Order{} // request id → order
		slowest   time.Duration
		failures  atomic.Int64
		wg        sync.WaitGroup
		stopAfter = time.Now().Add(3 * time.Second)
	)
	for w := range 8 {
		client := survivors[w%2].client
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stopAfter); i++ {
				requestID := fmt.Sprintf("w%d-%d", w, i)
				for attempt := 0; attempt < 30; attempt++ {
					callCtx, cancel := context.WithTimeout(ctx, callDeadline)
					start := time.Now()
					res, err := client.CreateOrder(callCtx, newOrder(requestID))
					took := time.Since(start)
					cancel()
					mu.Lock()
					slowest = max(slowest, took)
					mu.Unlock()
					if err == nil {
						mu.Lock()
						acked[requestID] = res.GetOrder()
						mu.Unlock()
						break
					}
					if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
						t.Errorf("create %s: %v, want OK or UNAVAILABLE", requestID, err)
						return
					}
					failures.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	killed := time.Now()
	if err := leader.stop(); err != nil {
		t.Fatalf("stopping the leader's node: %v", err)
	}
	wg.Wait()
	t.Logf("leader %s stopped %v into the run; %d creates acknowledged, %d failed attempts retried, slowest call %v",
		leaderName, killed.Sub(stopAfter.Add(-3*time.Second)).Round(time.Millisecond), len(acked), failures.Load(), slowest.Round(time.Millisecond))
	if slowest > callDeadline+time.Second {
		t.Errorf("a call took %v, past its %v deadline", slowest, callDeadline)
	}

	// Every acknowledged create is there, on both surviving nodes, and no
	// request id made two orders.
	for requestID, want := range acked {
		for _, n := range survivors {
			got, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: want.GetOrderId()})
			if err != nil || got.GetOrder().GetRevision() != want.GetRevision() {
				t.Fatalf("acknowledged %s (%s) on %s: %v, %v", requestID, want.GetOrderId(), n.name, got, err)
			}
		}
	}
	nc, err = survivors[0].ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	byRequest, err := eventsByRequest(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	stream, err = js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	for requestID, n := range byRequest {
		if n != 1 {
			t.Errorf("request %s stored %d orders", requestID, n)
		}
	}
	if newLeader := stream.CachedInfo().Cluster.Leader; newLeader == leaderName || newLeader == "" {
		t.Errorf("stream leader after the loss: %q", newLeader)
	}
}

// eventsByRequest counts the stored events of each request id, reading the
// whole stream with an ordered consumer.
func eventsByRequest(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	stream, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		return nil, err
	}
	last := stream.CachedInfo().State.LastSeq
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	counts := map[string]int{}
	for last > 0 {
		msg, err := it.Next()
		if err != nil {
			return nil, err
		}
		counts[msg.Headers().Get("Ordersd-Request-Id")]++
		meta, err := msg.Metadata()
		if err != nil {
			return nil, err
		}
		if meta.Sequence.Stream >= last {
			break
		}
	}
	return counts, nil
}
