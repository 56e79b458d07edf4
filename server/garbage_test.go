package server_test

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// rawCodec sends bytes exactly as given, to put messages on the wire that
// no generated client would produce.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// Bytes that are not a valid request message are refused by gRPC itself,
// with INTERNAL as the gRPC status code table prescribes for an unparsable
// request ("Error parsing request proto"); they never reach a handler, store
// nothing, and leave the server healthy.
func TestUndecodableRequestsAreRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	garbage := map[string][]byte{
		"truncated varint":        {0x08},
		"invalid wire type":       {0x0f, 0x01},
		"string that is not UTF8": {0x0a, 0x02, 0xff, 0xfe}, // field 1 (order_id or request_id) = "\xff\xfe"
		"length past the end":     {0x22, 0x7f, 0x01},
	}
	before := n.streamMsgs(t, "")
	for name, payload := range garbage {
		for _, method := range []string{"CreateOrder", "GetOrder", "ApproveOrder", "CancelOrder"} {
			var out []byte
			err := conn.Invoke(testCtx(t), "/orders.v1.OrderService/"+method, payload, &out, grpc.ForceCodec(rawCodec{}))
			if status.Code(err) != codes.Internal {
				t.Errorf("%s with %s: %v", method, name, err)
			}
		}
	}
	if after := n.streamMsgs(t, ""); after != before {
		t.Fatalf("garbage stored %d messages", after-before)
	}
	res, err := n.health.Check(testCtx(t), &healthpb.HealthCheckRequest{})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after garbage: %v %v", res, err)
	}
}

// A message another publisher put on ORDERS.> is never taken for an order:
// reads of it fail with DATA_LOSS, and writes on top of it are refused.
func TestForeignMessageInTheStream(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t) // provisions the stream
	// Indexed as an order of customer-1, so that reads find the message.
	key := eventstore.OrderKey{CustomerID: "customer-1", OrderID: "foreign-1"}
	entry, _ := eventstore.IndexEntry(key)
	if _, err := n.js.PublishMsg(testCtx(t), entry); err != nil {
		t.Fatal(err)
	}
	subject, err := eventstore.EventSubject(created, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.js.Publish(testCtx(t), subject, []byte("not an order")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: "foreign-1"}); status.Code(err) != codes.DataLoss {
		t.Errorf("GetOrder: %v, want DATA_LOSS", err)
	}
	if _, _, err := n.transition(testCtx(t), approved, "foreign-1", "", 0); status.Code(err) != codes.DataLoss {
		t.Errorf("ApproveOrder: %v, want DATA_LOSS", err)
	}
	stream, err := n.client.GetOrderHistory(testCtx(t), &ordersv1.GetOrderHistoryRequest{OrderId: "foreign-1"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DataLoss {
		t.Errorf("GetOrderHistory: %v, want DATA_LOSS", err)
	}
}
