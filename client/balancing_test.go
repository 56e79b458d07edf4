package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// peers counts the attempts of OrderService calls per node address (a stats
// handler sees each attempt, retries included).
type peers struct {
	mu     sync.Mutex // protects byAddr
	byAddr map[string]int
}

func (p *peers) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (p *peers) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *peers) HandleConn(context.Context, stats.ConnStats)                       {}
func (p *peers) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.OutHeader); ok && h.Client && h.FullMethod == ordersv1.OrderService_GetOrder_FullMethodName {
		p.mu.Lock()
		p.byAddr[h.RemoteAddr.String()]++
		p.mu.Unlock()
	}
}

func (p *peers) reset() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.byAddr
	p.byAddr = map[string]int{}
	return old
}

// Calls spread over the nodes of a list, with either balancer; a node that
// reports NOT_SERVING (cut off from NATS) gets none, not even a first
// attempt, until it serves again.
func TestDialBalancesOverHealthyNodes(t *testing.T) {
	nodes := testnode.StartShared(t, 2, testnode.Options{})
	a, b := nodes[0], nodes[1]
	for _, balancer := range []client.Balancer{client.RoundRobin, client.WeightedRoundRobin} {
		t.Run(string(balancer), func(t *testing.T) {
			seen := &peers{byAddr: map[string]int{}}
			c, err := client.Dial(a.Addr()+","+b.Addr(), client.WithInsecure(), client.WithBalancer(balancer),
				client.WithDialOptions(grpc.WithStatsHandler(seen)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := testsupport.Context(t, time.Minute)
			order := createFor(t, c, "balance")
			get := func(n int) map[string]int {
				seen.reset()
				for range n {
					if _, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()}); err != nil {
						t.Fatal(err)
					}
				}
				return seen.reset()
			}
			waitFor(t, 10*time.Second, "both nodes in use", func() bool { return len(get(10)) == 2 })
			if got := get(40); got[a.Addr()] < 10 || got[b.Addr()] < 10 {
				t.Fatalf("calls per node %v: not spread over both", got)
			}

			a.CutNATS()
			defer a.RestoreNATS()
			health := healthOf(t, a)
			waitFor(t, 20*time.Second, "a NOT_SERVING", func() bool {
				res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: ordersv1.OrderService_ServiceDesc.ServiceName})
				return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
			})
			waitFor(t, 10*time.Second, "the client's health watch hears it too", func() bool { return get(10)[a.Addr()] == 0 })
			if got := get(40); got[a.Addr()] != 0 {
				t.Fatalf("calls per node %v: the node reporting NOT_SERVING got calls", got)
			}
			a.RestoreNATS()
			waitFor(t, 20*time.Second, "a in use again", func() bool { return get(10)[a.Addr()] > 0 })
		})
	}
}

// healthOf is a plain health client of one node, without the client
// package's health checking (which would not call a node NOT_SERVING).
func healthOf(t *testing.T, n *testnode.Node) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}
