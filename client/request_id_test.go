package client

import (
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// A write without a request_id is sent as a copy with a fresh one; the
// caller's message is left as it was; a given id is kept; a request
// without the field is sent as it is.
func TestWithRequestID(t *testing.T) {
	t.Parallel()
	req := &ordersv1.PayOrderRequest{OrderId: "o-1"}
	sent, ok := withRequestID(req).(*ordersv1.PayOrderRequest)
	if !ok || sent == req || sent.GetRequestId() == "" || sent.GetOrderId() != "o-1" {
		t.Fatalf("sent %v for %v: want a copy with a request id", sent, req)
	}
	if req.GetRequestId() != "" {
		t.Fatalf("the caller's request was changed: %v", req)
	}
	if again := withRequestID(req).(*ordersv1.PayOrderRequest); again.GetRequestId() == sent.GetRequestId() {
		t.Fatalf("two calls with one message got the same id %q", again.GetRequestId())
	}

	given := &ordersv1.CreateOrderRequest{RequestId: "mine"}
	if got := withRequestID(given); got != given {
		t.Fatalf("a request with an id was replaced: %v", got)
	}
	read := &ordersv1.GetOrderRequest{OrderId: "o-1"}
	if got := withRequestID(read); got != read {
		t.Fatalf("a read was changed: %v", got)
	}

	one := &ordersv1.CreateOrdersRequest{Order: &ordersv1.CreateOrderRequest{CustomerId: "c"}}
	filled := withOrderRequestID(one).(*ordersv1.CreateOrdersRequest)
	if filled.GetOrder().GetRequestId() == "" || one.GetOrder().GetRequestId() != "" || !proto.Equal(one.GetOrder(), &ordersv1.CreateOrderRequest{CustomerId: "c"}) {
		t.Fatalf("CreateOrders message %v from %v: want a copy with a request id", filled, one)
	}
	for _, id := range []string{NewRequestID(), sent.GetRequestId()} {
		if len(id) < 1 || len(id) > 128 {
			t.Fatalf("request id %q: length out of 1 to 128", id)
		}
		for _, r := range id {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				t.Fatalf("request id %q: %q is not allowed", id, r)
			}
		}
	}
}
