package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/eventstore"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// startNATS runs a NATS server with JetStream on a loopback port, as an
// external deployment would be; port 0 picks a free one.
func startNATS(t *testing.T, storeDir string, port int) *natsserver.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func waitHealth(t *testing.T, n *testNode, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := n.health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: ordersv1.OrderService_ServiceDesc.ServiceName})
		if err == nil && res.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health is %v (%v), want %v", res.GetStatus(), err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With NATS gone, every call fails fast with UNAVAILABLE (or, at worst,
// DEADLINE_EXCEEDED) inside its deadline, health says NOT_SERVING, and all
// comes back by itself when NATS does.
func TestJetStreamUnreachable(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	ns := startNATS(t, storeDir, 0)
	url := ns.ClientURL()
	nc, err := eventstore.Connect(url, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	n := startService(t, nc, func() (*nats.Conn, error) { return nats.Connect(url, nats.MaxReconnects(-1)) })
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	order := n.create(t)

	natsPort := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)

	const deadline = 3 * time.Second
	calls := map[string]func(ctx context.Context) error{
		"GetOrder": func(ctx context.Context) error {
			_, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
			return err
		},
		"CreateOrder": func(ctx context.Context) error {
			_, err := n.client.CreateOrder(ctx, validCreate("while-down"))
			return err
		},
		"ApproveOrder": func(ctx context.Context) error {
			_, _, err := n.transition(ctx, approved, order.GetOrderId(), "approve-while-down", 0)
			return err
		},
		"GetOrderHistory": func(ctx context.Context) error {
			stream, err := n.client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: order.GetOrderId()})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		cancel()
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("%s while NATS is down: %v, want UNAVAILABLE", name, err)
		}
		if took > deadline+500*time.Millisecond {
			t.Errorf("%s took %v, past its %v deadline", name, took, deadline)
		}
	}

	startNATS(t, storeDir, natsPort)
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	got, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
	if err != nil || got.GetOrder().GetRevision() != order.GetRevision() {
		t.Fatalf("after NATS came back: %v, %v", got, err)
	}
	if _, _, err := n.transition(testCtx(t), approved, order.GetOrderId(), "approve-after", 0); err != nil {
		t.Fatalf("approve after NATS came back: %v", err)
	}
}
