package server_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/faultproxy"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// testOpTimeout is --nats-timeout of the test nodes: the OpTimeout of the
// store (and the Acker's timeout) that startServiceWith sets.
const testOpTimeout = 2 * time.Second

// patientClient is the deadline the calls below give themselves: far
// beyond testOpTimeout, so that a call that ends by the client's own
// DEADLINE_EXCEEDED fails the test rather than passing it. The server must
// answer first, by its own bound.
const patientClient = 30 * time.Second

// rpcCall is one call of one RPC kind; it returns what the server answered:
// a status code name ("UNAVAILABLE"), "OK" or, for AckOrders, the ack
// results ("confirmed: false").
type rpcCall struct {
	name string
	want string
	call func(ctx context.Context) string
}

// codeOf names the code of err ("OK" when nil).
func codeOf(err error) string { return status.Code(err).String() }

// everyRPCKind is one call of each RPC kind about order (an existing,
// created order), with ackToken a token of an unacked delivery. Streams
// ask for heartbeats rarely, so their first message is what the server
// answers, not a heartbeat.
func everyRPCKind(n *testNode, order *ordersv1.Order, ackToken, tag string) []rpcCall {
	const rareHeartbeat = 5 * time.Minute
	unavailable := codes.Unavailable.String()
	return []rpcCall{
		{"CreateOrder", unavailable, func(ctx context.Context) string {
			_, err := n.client.CreateOrder(ctx, validCreate("create-"+tag))
			return codeOf(err)
		}},
		{"CreateOrders", unavailable, func(ctx context.Context) string {
			stream, err := n.client.CreateOrders(ctx)
			if err != nil {
				return codeOf(err)
			}
			if err := stream.Send(&ordersv1.CreateOrdersRequest{Order: validCreate("creates-" + tag)}); err != nil {
				return "send: " + codeOf(err)
			}
			if err := stream.CloseSend(); err != nil {
				return "close: " + codeOf(err)
			}
			res, err := stream.Recv()
			if err != nil {
				return codeOf(err)
			}
			if res.GetError() == nil {
				return "OK"
			}
			return codes.Code(code.Code_value[res.GetError().GetCode()]).String()
		}},
		{"GetOrder", unavailable, func(ctx context.Context) string {
			_, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
			return codeOf(err)
		}},
		{"ApproveOrder", unavailable, func(ctx context.Context) string {
			_, _, err := n.transition(ctx, approved, order.GetOrderId(), "approve-"+tag, 0)
			return codeOf(err)
		}},
		{"GetOrderHistory", unavailable, func(ctx context.Context) string {
			stream, err := n.client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: order.GetOrderId()})
			if err == nil {
				_, err = stream.Recv()
			}
			return codeOf(err)
		}},
		{"ConsumeOrders", unavailable, func(ctx context.Context) string {
			stream, err := n.client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{Consumer: "rpc-kinds-" + tag, HeartbeatInterval: dur(rareHeartbeat)})
			if err != nil {
				return codeOf(err)
			}
			res, err := stream.Recv()
			if err != nil {
				return codeOf(err)
			}
			return fmt.Sprintf("a message: %v", res)
		}},
		{"StreamOrders", unavailable, func(ctx context.Context) string {
			stream, err := n.client.StreamOrders(ctx)
			if err != nil {
				return codeOf(err)
			}
			open := &ordersv1.ConsumeOrdersRequest{Consumer: "rpc-kinds-stream-" + tag, HeartbeatInterval: dur(rareHeartbeat)}
			if err := stream.Send(&ordersv1.StreamOrdersRequest{Open: open}); err != nil {
				return "send: " + codeOf(err)
			}
			res, err := stream.Recv()
			if err != nil {
				return codeOf(err)
			}
			return fmt.Sprintf("a message: %v", res)
		}},
		{"ListOrders of a customer", unavailable, func(ctx context.Context) string {
			_, err := n.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: order.GetCustomerId()})
			return codeOf(err)
		}},
		{"ListOrders by status", unavailable, func(ctx context.Context) string {
			_, err := n.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{Statuses: []ordersv1.OrderStatus{created, approved}})
			return codeOf(err)
		}},
		// The queue calls name a consumer of their own, so that a call that
		// reaches JetStream once the link is back changes nothing a test
		// looks at.
		{"ListConsumers", unavailable, func(ctx context.Context) string {
			_, err := n.queue.ListConsumers(ctx, &ordersv1.ListConsumersRequest{})
			return codeOf(err)
		}},
		{"GetConsumer", unavailable, func(ctx context.Context) string {
			_, err := n.queue.GetConsumer(ctx, &ordersv1.GetConsumerRequest{Consumer: "rpc-kinds-queue-" + tag})
			return codeOf(err)
		}},
		{"UpdateConsumer", unavailable, func(ctx context.Context) string {
			_, err := n.queue.UpdateConsumer(ctx, &ordersv1.UpdateConsumerRequest{Consumer: "rpc-kinds-queue-" + tag, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"ack_wait"}}, AckWait: dur(time.Minute)})
			return codeOf(err)
		}},
		{"DeleteConsumer", unavailable, func(ctx context.Context) string {
			_, err := n.queue.DeleteConsumer(ctx, &ordersv1.DeleteConsumerRequest{Consumer: "rpc-kinds-queue-" + tag})
			return codeOf(err)
		}},
		{"ListDeadLetters", unavailable, func(ctx context.Context) string {
			_, err := n.queue.ListDeadLetters(ctx, &ordersv1.ListDeadLettersRequest{Consumer: "rpc-kinds-queue-" + tag})
			return codeOf(err)
		}},
		{"RedriveDeadLetters", unavailable, func(ctx context.Context) string {
			_, err := n.queue.RedriveDeadLetters(ctx, &ordersv1.RedriveDeadLettersRequest{Consumer: "rpc-kinds-queue-" + tag, All: true})
			return codeOf(err)
		}},
		{"PurgeDeadLetters", unavailable, func(ctx context.Context) string {
			_, err := n.queue.PurgeDeadLetters(ctx, &ordersv1.PurgeDeadLettersRequest{Consumer: "rpc-kinds-queue-" + tag, All: true})
			return codeOf(err)
		}},
		{"AckOrders", "confirmed: false", func(ctx context.Context) string {
			res, err := n.client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: ackToken, Action: ordersv1.AckAction_ACK_ACTION_ACK}}})
			if err != nil {
				return codeOf(err)
			}
			if len(res.GetResults()) != 1 {
				return fmt.Sprintf("%d results for 1 ack", len(res.GetResults()))
			}
			if r := res.GetResults()[0]; r.GetConfirmed() || r.GetError() == "" {
				return fmt.Sprintf("confirmed: %v, error %q", r.GetConfirmed(), r.GetError())
			}
			return "confirmed: false"
		}},
		{"WatchOrders with replay", unavailable, func(ctx context.Context) string {
			stream, err := n.client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}, HeartbeatInterval: dur(rareHeartbeat)})
			if err != nil {
				return codeOf(err)
			}
			res, err := stream.Recv()
			if err != nil {
				return codeOf(err)
			}
			return fmt.Sprintf("a message: %v", res)
		}},
	}
}

// callResult is what one call answered and how long it took.
type callResult struct {
	name, got, want string
	took            time.Duration
}

// callAll makes every call at once, each with the patient client's
// deadline, and returns what each answered, in name order. At once: the
// bound is per call, and the test then waits one bound, not eight.
func callAll(calls []rpcCall) []callResult {
	results := make([]callResult, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), patientClient)
			defer cancel()
			start := time.Now()
			got := c.call(ctx)
			results[i] = callResult{name: c.name, got: got, want: c.want, took: time.Since(start)}
		}()
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].name < results[j].name })
	return results
}

// checkAnswers fails the test for every call that did not answer as wanted
// within bound.
func checkAnswers(t *testing.T, results []callResult, bound time.Duration, while string) {
	t.Helper()
	for _, r := range results {
		t.Logf("%s %s: %s after %v", r.name, while, r.got, r.took.Round(time.Millisecond))
		if r.got != r.want {
			t.Errorf("%s %s: %s, want %s", r.name, while, r.got, r.want)
		}
		if r.took > bound {
			t.Errorf("%s %s took %v, want at most %v", r.name, while, r.took, bound)
		}
	}
}

// startNodeBehindProxy runs a node whose NATS connection (returned) goes
// through a fault proxy, while the test's own connection goes straight to
// NATS.
func startNodeBehindProxy(t *testing.T) (*testNode, *faultproxy.Proxy, *nats.Conn) {
	t.Helper()
	ns := testsupport.StartNATS(t)
	proxy, err := faultproxy.New("127.0.0.1:0", ns.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	url := "nats://" + proxy.Addr()
	// A cluster member tells its clients its peers' URLs (a lone server
	// has none to tell); ignoring them keeps every reconnect on the proxy,
	// which a client that learned another way in would bypass.
	nc, err := natsconn.Connect(url, nil, testLogger(), nats.IgnoreDiscoveredServers())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The test's own connection goes straight to NATS, around the proxy.
	n := startService(t, nc, func() (*nats.Conn, error) { return nats.Connect(ns.ClientURL()) })
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	return n, proxy, nc
}

// heldDelivery consumes order's created event on a consumer of its own and
// returns the delivery's ack token, unacked (a long ack wait keeps it so).
func heldDelivery(t *testing.T, n *testNode) string {
	t.Helper()
	req := createdQueue("held")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Hour)}
	stream, cancel := n.consume(t, req)
	defer cancel()
	return nextEvent(t, stream).GetAckToken()
}

// notServingAfter polls health from now on and reports, on the returned
// channel, how long after start it first said NOT_SERVING (once; nothing
// if it never does before ctx ends).
func notServingAfter(ctx context.Context, n *testNode, start time.Time) <-chan time.Duration {
	seen := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			checkCtx, cancel := context.WithTimeout(ctx, time.Second)
			res, err := n.health.Check(checkCtx, &healthpb.HealthCheckRequest{Service: ordersv1.OrderService_ServiceDesc.ServiceName})
			cancel()
			if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				seen <- time.Since(start)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return seen
}

// stallBound is how long a call may take while NATS stalls: one
// --nats-timeout, plus a margin for scheduling on a loaded 2-core machine
// (not for another wait on JetStream: a second --nats-timeout fails). The
// bound is the point of the stall tests: a call that waits on JetStream
// without one runs into the client's 30 s deadline.
const stallBound = testOpTimeout + time.Second

// With the node's NATS link stalled (open, no byte through), no call
// waits for the client's patience: every RPC kind answers within
// --nats-timeout with UNAVAILABLE (AckOrders: confirmed false, with an
// error), and health goes NOT_SERVING within one check bounded the same
// way. The NATS connection must still look connected throughout, or this
// would test a cut. ConsumeOrders, StreamOrders and a watch that starts
// the node's monitor are in TestStreamSetUpIsBoundedWhileNATSStalls.
func TestEveryCallIsBoundedWhileNATSStalls(t *testing.T) {
	t.Parallel()
	n, proxy, nc := startNodeBehindProxy(t)
	order := n.create(t)
	token := heldDelivery(t, n)
	// A watcher is on: the node's monitor runs, as on any node in use.
	watching, _ := n.watch(t, &ordersv1.WatchOrdersRequest{})
	if res, err := watching.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("watch: %v, %v", res, err)
	}
	var calls []rpcCall
	for _, c := range everyRPCKind(n, order, token, "stalled") {
		if c.name != "ConsumeOrders" && c.name != "StreamOrders" {
			calls = append(calls, c)
		}
	}

	proxy.Stall()
	stalledAt := time.Now()
	healthCtx, stopHealth := context.WithTimeout(context.Background(), 20*time.Second)
	defer stopHealth()
	unhealthy := notServingAfter(healthCtx, n, stalledAt)
	checkAnswers(t, callAll(calls), stallBound, "while stalled")
	// Health checks JetStream every 200 ms, each check bounded by
	// --nats-timeout: at most one interval and one check, plus the margin.
	select {
	case took := <-unhealthy:
		t.Logf("health NOT_SERVING %v after the stall began", took.Round(time.Millisecond))
		if bound := 200*time.Millisecond + stallBound; took > bound {
			t.Errorf("health went NOT_SERVING %v after the stall began, want at most %v", took, bound)
		}
	case <-healthCtx.Done():
		t.Error("health still SERVING 20s into the stall")
	}
	if !nc.IsConnected() {
		t.Fatal("the NATS connection noticed the stall and reconnected: this tested a cut, not a stall")
	}

	proxy.Resume()
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	if _, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()}); err != nil {
		t.Fatalf("GetOrder after the stall: %v", err)
	}
	n.create(t)
}

// The set-up of a ConsumeOrders or StreamOrders stream (binding its
// durable consumer) and of the first watch on a node (subscribing its
// monitor) is bounded by --nats-timeout too, as docs/guarantees.md
// promises for every JetStream
// operation.
func TestStreamSetUpIsBoundedWhileNATSStalls(t *testing.T) {
	t.Parallel()
	n, proxy, _ := startNodeBehindProxy(t)
	order := n.create(t)
	var calls []rpcCall
	for _, c := range everyRPCKind(n, order, "", "stalled") {
		if c.name == "ConsumeOrders" || c.name == "StreamOrders" || c.name == "WatchOrders with replay" {
			calls = append(calls, c)
		}
	}
	proxy.Stall()
	checkAnswers(t, callAll(calls), stallBound, "while stalled")
}
