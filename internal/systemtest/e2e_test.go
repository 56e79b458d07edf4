package systemtest

import (
	"context"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// The whole flow of one command: an order is created, the built-in review
// worker approves it (and rejects one over the limit), WatchOrders shows
// each order created then reviewed, and GetOrder shows the outcome.
func TestReviewFlowEndToEnd(t *testing.T) {
	client, health, _ := startOrdersd(t, t.TempDir(), "--review-limit-minor", "5000")
	waitServing(t, health)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	watch, err := client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("watch: %v, %v", res, err)
	}
	create := func(id string, price int64) {
		t.Helper()
		if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
			OrderId: id, CustomerId: "alice", CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "BOOK-42", Quantity: 2, UnitPriceMinor: price}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	create("small", 1250) // total 2500: approved
	create("large", 9000) // total 18000: rejected

	seen := map[string][]ordersv1.OrderStatus{}
	for len(seen["small"]) < 2 || len(seen["large"]) < 2 {
		res, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if o := res.GetEvent().GetOrder(); o != nil {
			seen[o.GetOrderId()] = append(seen[o.GetOrderId()], o.GetStatus())
		}
	}
	want := map[string][]ordersv1.OrderStatus{
		"small": {ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_APPROVED},
		"large": {ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_REJECTED},
	}
	for id, statuses := range want {
		if len(seen[id]) != 2 || seen[id][0] != statuses[0] || seen[id][1] != statuses[1] {
			t.Errorf("%s: watched %v, want %v", id, seen[id], statuses)
		}
	}
	small, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "small"})
	if err != nil || small.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
		t.Fatalf("GetOrder(small) = %v, %v", small, err)
	}
	large, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "large"})
	if err != nil || large.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_REJECTED ||
		!strings.Contains(large.GetOrder().GetReason(), "exceeds the review limit") {
		t.Fatalf("GetOrder(large) = %v, %v", large, err)
	}
}
