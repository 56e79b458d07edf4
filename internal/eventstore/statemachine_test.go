package eventstore

import (
	"slices"
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

// mayPrecede follows the transitions through every step, and never back.
func TestMayPrecede(t *testing.T) {
	t.Parallel()
	const (
		c = ordersv1.OrderStatus_ORDER_STATUS_CREATED
		a = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
		r = ordersv1.OrderStatus_ORDER_STATUS_REJECTED
		p = ordersv1.OrderStatus_ORDER_STATUS_PAID
		s = ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
		x = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
	)
	precedes := map[ordersv1.OrderStatus][]ordersv1.OrderStatus{c: {a, r, p, s, x}, a: {p, s, x}, p: {s}}
	for _, before := range []ordersv1.OrderStatus{c, a, r, p, s, x} {
		for _, after := range []ordersv1.OrderStatus{c, a, r, p, s, x} {
			if got, want := mayPrecede(before, after), slices.Contains(precedes[before], after); got != want {
				t.Errorf("mayPrecede(%v, %v) = %v, want %v", before, after, got, want)
			}
		}
	}
}
