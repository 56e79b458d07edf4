package server_test

import (
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// ConsumeOrders with a customer_id gets a consumer whose subject filter
// names the customer: JetStream holds only that customer's events for it.
func TestConsumeOrdersOfOneCustomer(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for range 10 {
		n.createFor(t, "others")
	}
	var want []string
	for range 3 {
		want = append(want, n.createFor(t, "frank").GetOrderId())
	}
	n.createFor(t, "others")
	stream, cancel := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: "frank-created", CustomerId: "frank",
		Statuses: []ordersv1.OrderStatus{created}, Settings: &ordersv1.ConsumerSettings{Start: &ordersv1.ConsumerSettings_StartSequence{StartSequence: 1}}})
	defer cancel()
	for _, id := range want {
		if res := nextEvent(t, stream); res.GetEvent().GetOrder().GetOrderId() != id {
			t.Fatalf("got %v, want order %s", res.GetEvent().GetOrder(), id)
		}
	}
	info := n.consumerInfo(t, "frank-created")
	if info.Config.FilterSubject != "ORDERS.created.frank.*" && (len(info.Config.FilterSubjects) != 1 || info.Config.FilterSubjects[0] != "ORDERS.created.frank.*") {
		t.Errorf("filter %q %q, want ORDERS.created.frank.*", info.Config.FilterSubject, info.Config.FilterSubjects)
	}
	if info.NumPending != 0 || info.Delivered.Consumer != 3 {
		t.Errorf("JetStream delivered %d and holds %d pending, want frank's 3 and none", info.Delivered.Consumer, info.NumPending)
	}
}
