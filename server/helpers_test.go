package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/server"
)

// testNode is one ordersd node in the test process: a real NATS server with
// JetStream, the event store, and the gRPC server on a loopback port, with a
// client connected to it.
// testAckKey signs ack tokens on every test node, as a shared key file
// would in a deployment.
const testAckKey = "test-ack-token-key-0123456789abcdef"

type testNode struct {
	kill    func() // the node dies: its gRPC server and NATS connection close at once
	addr    string
	nc      *nats.Conn // the node's own connection
	monitor *consumers.Monitor
	store   *eventstore.Store
	client  ordersv1.OrderServiceClient
	queue   ordersv1.QueueServiceClient
	health  healthpb.HealthClient
	js      jetstream.JetStream // a separate NATS connection, to look at the stream directly
}

func testLogger() *slog.Logger { return testsupport.Logger() }

// startNode runs ordersd's parts against an embedded NATS server.
func startNode(t *testing.T) *testNode {
	t.Helper()
	return startNodes(t, 1)[0]
}

// startNodes runs count ordersd nodes on one embedded NATS server, as
// replicas behind a load balancer share one NATS deployment.
func startNodes(t *testing.T, count int, tune ...func(*server.Deps)) []*testNode {
	t.Helper()
	return startNodesWith(t, count, server.GRPCOptions{}, tune...)
}

// startNodesWith is startNodes with gRPC options (authentication, rate limits).
func startNodesWith(t *testing.T, count int, grpcOpts server.GRPCOptions, tune ...func(*server.Deps)) []*testNode {
	t.Helper()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	var nodes []*testNode
	for range count {
		nc, err := natsconn.Connect("", ns, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		nodes = append(nodes, startServiceWith(t, nc, func() (*nats.Conn, error) { return nats.Connect("", nats.InProcessServer(ns)) }, grpcOpts, tune...))
	}
	return nodes
}

// startService serves the OrderService over nc and connects a gRPC client.
// inspect opens the test's own connection for looking at the stream.
func startService(t *testing.T, nc *nats.Conn, inspect func() (*nats.Conn, error), tune ...func(*server.Deps)) *testNode {
	return startServiceWith(t, nc, inspect, server.GRPCOptions{}, tune...)
}

// startServiceWith is startService with gRPC options (authentication, rate limits).
// The node is assembled as ordersd assembles it (node.Assemble).
func startServiceWith(t *testing.T, nc *nats.Conn, inspect func() (*nats.Conn, error), grpcOpts server.GRPCOptions, tune ...func(*server.Deps)) *testNode {
	t.Helper()
	return startServiceOpts(t, nc, inspect, func(o *node.ServiceOptions) {
		o.GRPC = grpcOpts
		o.Tune = func(d *server.Deps) {
			for _, f := range tune {
				f(d)
			}
		}
	})
}

// startServiceOpts is startService with the node's options set by tune.
func startServiceOpts(t *testing.T, nc *nats.Conn, inspect func() (*nats.Conn, error), tune func(*node.ServiceOptions)) *testNode {
	t.Helper()
	tokens, err := consumers.NewAckTokens([]byte(testAckKey))
	if err != nil {
		t.Fatal(err)
	}
	opts := node.ServiceOptions{
		OpTimeout:      2 * time.Second,
		Tokens:         tokens,
		HealthInterval: 200 * time.Millisecond,
	}
	tune(&opts)
	svc, err := node.Assemble(testCtx(t), nc, opts, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.GRPC.Serve(lis) }()
	t.Cleanup(func() {
		// As ordersd shuts down: NOT_SERVING, end the streams, then wait for every handler.
		if err := svc.Shutdown(10 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	inc, err := inspect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inc.Close)
	ijs, err := jetstream.New(inc)
	if err != nil {
		t.Fatal(err)
	}
	kill := sync.OnceFunc(func() { svc.GRPC.Stop(); nc.Close() })
	return &testNode{kill: kill, addr: lis.Addr().String(), nc: nc, monitor: svc.Monitor, store: svc.Store, client: ordersv1.NewOrderServiceClient(conn), queue: ordersv1.NewQueueServiceClient(conn), health: healthpb.NewHealthClient(conn), js: ijs}
}

// testCtx bounds one call of a test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	return testsupport.Context(t, 20*time.Second)
}

// streamCtx bounds a stream a test holds open: it may have to outlast
// NATS restarting and several health polls (each bounded on its own), so
// it ends with the test, or after two minutes if something hangs.
func streamCtx(t *testing.T) context.Context {
	t.Helper()
	return testsupport.Context(t, 2*time.Minute)
}

// streamMsgs counts the messages in the stream ORDERS (all of them, or on
// one subject filter).
func (n *testNode) streamMsgs(t *testing.T, filter string) uint64 {
	t.Helper()
	ctx := testCtx(t)
	stream, err := n.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if filter == "" {
		return stream.CachedInfo().State.Msgs
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	return total
}

// orderMsgs counts the events of one order in the stream ORDERS.
func (n *testNode) orderMsgs(t *testing.T, k eventstore.OrderKey) uint64 {
	t.Helper()
	filter, err := eventstore.OrderSubjects(k)
	if err != nil {
		t.Fatal(err)
	}
	return n.streamMsgs(t, filter)
}

// storedOrder reads the message at seq straight from the stream and decodes it.
func (n *testNode) storedOrder(t *testing.T, seq uint64) (*jetstream.RawStreamMsg, *ordersv1.Order) {
	t.Helper()
	ctx := testCtx(t)
	stream, err := n.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	order := &ordersv1.Order{}
	if err := proto.Unmarshal(raw.Data, order); err != nil {
		t.Fatalf("decode message %d: %v", seq, err)
	}
	return raw, order
}

func validCreate(requestID string) *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{
		RequestId:    requestID,
		CustomerId:   "customer-1",
		CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{
			{Sku: "BOOK-1", Quantity: 2, UnitPriceMinor: 1250},
			{Sku: "PEN-7", Quantity: 1, UnitPriceMinor: 99},
		},
	}
}

// create makes an order and fails the test if it cannot.
func (n *testNode) create(t *testing.T) *ordersv1.Order {
	t.Helper()
	res, err := n.client.CreateOrder(testCtx(t), validCreate(""))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return res.GetOrder()
}

// transition calls the RPC that moves an order to status to.
func (n *testNode) transition(ctx context.Context, to ordersv1.OrderStatus, orderID, requestID string, expected uint64) (*ordersv1.Order, bool, error) {
	type result interface {
		GetOrder() *ordersv1.Order
		GetDuplicate() bool
	}
	var (
		res result
		err error
	)
	switch to {
	case ordersv1.OrderStatus_ORDER_STATUS_APPROVED:
		res, err = n.client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: orderID, RequestId: requestID, ExpectedRevision: expected})
	case ordersv1.OrderStatus_ORDER_STATUS_REJECTED:
		res, err = n.client.RejectOrder(ctx, &ordersv1.RejectOrderRequest{OrderId: orderID, RequestId: requestID, ExpectedRevision: expected, Reason: "over the limit"})
	case ordersv1.OrderStatus_ORDER_STATUS_PAID:
		res, err = n.client.PayOrder(ctx, &ordersv1.PayOrderRequest{OrderId: orderID, RequestId: requestID, ExpectedRevision: expected})
	case ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:
		res, err = n.client.ShipOrder(ctx, &ordersv1.ShipOrderRequest{OrderId: orderID, RequestId: requestID, ExpectedRevision: expected})
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		res, err = n.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{OrderId: orderID, RequestId: requestID, ExpectedRevision: expected, Reason: "changed my mind"})
	default:
		panic("no RPC for " + to.String())
	}
	if err != nil {
		return nil, false, err
	}
	return res.GetOrder(), res.GetDuplicate(), nil
}

// history reads an order's whole history through GetOrderHistory.
func (n *testNode) history(t *testing.T, orderID string) []*ordersv1.OrderEvent {
	t.Helper()
	stream, err := n.client.GetOrderHistory(testCtx(t), &ordersv1.GetOrderHistoryRequest{OrderId: orderID})
	if err != nil {
		t.Fatal(err)
	}
	var events []*ordersv1.OrderEvent
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			return events
		}
		if err != nil {
			t.Fatalf("GetOrderHistory(%s): %v", orderID, err)
		}
		events = append(events, res.GetEvent())
	}
}

func (n *testNode) consumerInfo(t *testing.T, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := testCtx(t)
	stream, err := n.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.Consumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
