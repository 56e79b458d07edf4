package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

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
	ns := testsupport.StartNATS(t, testsupport.StoreDir(storeDir))
	url := ns.ClientURL()
	nc, err := eventstore.Connect(url, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	n := startService(t, nc, func() (*nats.Conn, error) { return nats.Connect(url, nats.MaxReconnects(-1)) })
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	order := n.create(t)

	// Streams open across the cut: afterwards each must go on with no gap
	// or end with a status to reconnect on, never stall in silence.
	watching, _ := n.watch(t, &ordersv1.WatchOrdersRequest{HeartbeatInterval: dur(time.Second)})
	if res, err := watching.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("watch: %v, %v", res, err)
	}
	consuming, _ := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: "across-the-cut", HeartbeatInterval: dur(time.Second)})
	nextEvent(t, consuming) // the order created above

	natsPort := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)

	checkCallsFailFast(t, n, order, "while NATS is down")

	testsupport.StartNATS(t, testsupport.StoreDir(storeDir), testsupport.Port(natsPort))
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	got, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
	if err != nil || got.GetOrder().GetRevision() != order.GetRevision() {
		t.Fatalf("after NATS came back: %v, %v", got, err)
	}
	approvedOrder, _, err := n.transition(testCtx(t), approved, order.GetOrderId(), "approve-after", 0)
	if err != nil {
		t.Fatalf("approve after NATS came back: %v", err)
	}
	// The watch saw the approval, or ended with a status to resume on.
	for {
		res, err := watching.Recv()
		if err != nil {
			if c := status.Code(err); c != codes.Unavailable {
				t.Fatalf("watch across the cut ended with %v, want UNAVAILABLE", err)
			}
			break
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != approvedOrder.GetRevision() {
				t.Fatalf("watch across the cut: got sequence %d, want %d", ev.GetSequence(), approvedOrder.GetRevision())
			}
			break
		}
	}
	// The consume stream goes on (heartbeats) or ended with UNAVAILABLE.
	if res, err := consuming.Recv(); err != nil && status.Code(err) != codes.Unavailable {
		t.Fatalf("consume across the cut: %v, %v", res, err)
	}
}

// checkCallsFailFast makes one call of each kind while JetStream cannot be
// reached: each must fail with UNAVAILABLE (or, at worst,
// DEADLINE_EXCEEDED) inside its deadline.
func checkCallsFailFast(t *testing.T, n *testNode, order *ordersv1.Order, while string) {
	t.Helper()
	const deadline = 3 * time.Second
	calls := map[string]func(ctx context.Context) error{
		"GetOrder": func(ctx context.Context) error {
			_, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
			return err
		},
		"CreateOrder": func(ctx context.Context) error {
			_, err := n.client.CreateOrder(ctx, validCreate("create-unreachable"))
			return err
		},
		"ApproveOrder": func(ctx context.Context) error {
			_, _, err := n.transition(ctx, approved, order.GetOrderId(), "approve-unreachable", 0)
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
			t.Errorf("%s %s: %v, want UNAVAILABLE", name, while, err)
		}
		if took > deadline+500*time.Millisecond {
			t.Errorf("%s took %v %s, past its %v deadline", name, took, while, deadline)
		}
	}
}
