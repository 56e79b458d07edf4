package eventstore

import (
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func TestStateMachine(t *testing.T) {
	t.Parallel()
	legal := map[[2]ordersv1.OrderStatus]bool{}
	for from, tos := range transitions {
		for _, to := range tos {
			legal[[2]ordersv1.OrderStatus{from, to}] = true
		}
	}
	want := [][2]ordersv1.OrderStatus{
		{ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_APPROVED},
		{ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_REJECTED},
		{ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED},
		{ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ordersv1.OrderStatus_ORDER_STATUS_PAID},
		{ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED},
		{ordersv1.OrderStatus_ORDER_STATUS_PAID, ordersv1.OrderStatus_ORDER_STATUS_SHIPPED},
	}
	if len(legal) != len(want) {
		t.Fatalf("%d legal transitions, want %d", len(legal), len(want))
	}
	for _, w := range want {
		if !CanTransition(w[0], w[1]) {
			t.Errorf("%v -> %v refused", w[0], w[1])
		}
	}
}
