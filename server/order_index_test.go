package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// An order id is taken once across all customers (the order-id index):
// another customer's create of it is ALREADY_EXISTS, even with the same
// request id, and stores nothing; the same customer's retry is a
// duplicate.
func TestOrderIDIsUniqueAcrossCustomers(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	req := validCreate("first-request")
	req.OrderId = "shared-id"
	first, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, requestID := range []string{"other-request", "first-request", ""} {
		other := validCreate(requestID)
		other.OrderId, other.CustomerId = "shared-id", "customer-2"
		if _, err := n.client.CreateOrder(testCtx(t), other); status.Code(err) != codes.AlreadyExists {
			t.Errorf("customer-2 creating shared-id with request id %q: %v, want ALREADY_EXISTS", requestID, err)
		}
	}
	if got := n.orderMsgs(t, eventstore.OrderKey{CustomerID: "customer-2", OrderID: "shared-id"}); got != 0 {
		t.Errorf("%d events stored for customer-2's shared-id, want 0", got)
	}
	again, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil || !again.GetDuplicate() || !proto.Equal(again.GetOrder(), first.GetOrder()) {
		t.Fatalf("the same customer's retry: %v, %v; want a duplicate of %v", again, err, first.GetOrder())
	}
	got, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: "shared-id"})
	if err != nil || !proto.Equal(got.GetOrder(), first.GetOrder()) {
		t.Fatalf("GetOrder: %v, %v; want %v", got.GetOrder(), err, first.GetOrder())
	}
}

// A create that died after its index entry and before its event leaves
// no order (GetOrder and GetOrderHistory are NOT_FOUND) and an id that
// stays its customer's: another customer cannot take it, and that
// customer's next create of it completes it.
func TestCreateThatDiedAfterItsIndexEntry(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t) // provisions the streams
	key := eventstore.OrderKey{CustomerID: "customer-1", OrderID: "half-made"}
	entry, expectNew := eventstore.IndexEntry(key)
	if _, err := n.js.PublishMsg(testCtx(t), entry, expectNew); err != nil {
		t.Fatal(err)
	}

	if _, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: key.OrderID}); status.Code(err) != codes.NotFound {
		t.Errorf("GetOrder of a half-made order: %v, want NOT_FOUND", err)
	}
	history, err := n.client.GetOrderHistory(testCtx(t), &ordersv1.GetOrderHistoryRequest{OrderId: key.OrderID})
	if err == nil {
		_, err = history.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetOrderHistory of a half-made order: %v, want NOT_FOUND", err)
	}
	if _, _, err := n.transition(testCtx(t), approved, key.OrderID, "", 0); status.Code(err) != codes.NotFound {
		t.Errorf("ApproveOrder of a half-made order: %v, want NOT_FOUND", err)
	}

	other := validCreate("")
	other.OrderId, other.CustomerId = key.OrderID, "customer-2"
	if _, err := n.client.CreateOrder(testCtx(t), other); status.Code(err) != codes.AlreadyExists {
		t.Errorf("another customer creating the half-made id: %v, want ALREADY_EXISTS", err)
	}

	req := validCreate("completes-it")
	req.OrderId, req.CustomerId = key.OrderID, key.CustomerID
	res, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil || res.GetDuplicate() || res.GetOrder().GetRevision() == 0 {
		t.Fatalf("the customer's create of its half-made id: %v, %v; want a new order", res, err)
	}
	got, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: key.OrderID})
	if err != nil || !proto.Equal(got.GetOrder(), res.GetOrder()) {
		t.Fatalf("GetOrder after completing: %v, %v; want %v", got.GetOrder(), err, res.GetOrder())
	}
	if got := n.orderMsgs(t, key); got != 1 {
		t.Errorf("%d events for the completed order, want 1", got)
	}
}
