package server_test

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/natsconn"
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

// With NATS gone, every call fails fast with UNAVAILABLE, health says NOT_SERVING, and all
// comes back by itself when NATS does.
func TestJetStreamUnreachable(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	ns := testsupport.StartNATS(t, testsupport.StoreDir(storeDir))
	url := ns.ClientURL()
	nc, err := natsconn.Connect(url, nil, testLogger())
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
	held := nextEvent(t, consuming) // the order created above, left unacked

	natsPort := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)

	checkCallsFailFast(t, n, order, held.GetAckToken(), "while NATS is down")

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

// checkCallsFailFast makes one call of each RPC kind while NATS is known
// to be disconnected: each must answer UNAVAILABLE well under
// --nats-timeout, since nothing is worth waiting for, and long before the
// client's own deadline (so DEADLINE_EXCEEDED fails). ackToken is a token
// of an unacked delivery.
//
// AckOrders is held only to the stall bound (confirmed false within
// --nats-timeout): today it waits for its confirmations whatever the
// connection's state, see TestAcksFailFastWhileNATSIsDisconnected.
func checkCallsFailFast(t *testing.T, n *testNode, order *ordersv1.Order, ackToken, while string) {
	t.Helper()
	var fast, acks []rpcCall
	for _, c := range everyRPCKind(n, order, ackToken, "unreachable") {
		if c.name == "AckOrders" {
			acks = append(acks, c)
		} else {
			fast = append(fast, c)
		}
	}
	// Half of --nats-timeout: a call that waited on JetStream at all takes
	// a whole one; failing fast takes milliseconds, and the rest is margin
	// for a loaded 2-core machine.
	checkAnswers(t, callAll(fast), testOpTimeout/2, while)
	checkAnswers(t, callAll(acks), stallBound, while)
}

// AckOrders fails fast too while NATS is known to be disconnected, as the
// docs/guarantees.md promises of every call.
func TestAcksFailFastWhileNATSIsDisconnected(t *testing.T) {
	t.Parallel()
	n, proxy, _ := startNodeBehindProxy(t)
	order := n.create(t)
	token := heldDelivery(t, n)
	proxy.Cut()
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)
	var acks []rpcCall
	for _, c := range everyRPCKind(n, order, token, "cut") {
		if c.name == "AckOrders" {
			acks = append(acks, c)
		}
	}
	checkAnswers(t, callAll(acks), testOpTimeout/2, "while cut")
}
