package eventstore

import ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"

// transitions lists, for each status, the statuses an order may move to.
// Each status is entered at most once in an order's life (the graph has no
// cycles), so a request for a status the order already passed through can
// only be a retry or a mistake, never a legal repeat.
var transitions = map[ordersv1.OrderStatus][]ordersv1.OrderStatus{
	ordersv1.OrderStatus_ORDER_STATUS_CREATED: {
		ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		ordersv1.OrderStatus_ORDER_STATUS_REJECTED,
		ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
	},
	ordersv1.OrderStatus_ORDER_STATUS_APPROVED: {
		ordersv1.OrderStatus_ORDER_STATUS_PAID,
		ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
	},
	ordersv1.OrderStatus_ORDER_STATUS_PAID: {
		ordersv1.OrderStatus_ORDER_STATUS_SHIPPED,
	},
}

// CanTransition reports whether an order in status from may move to status to.
func CanTransition(from, to ordersv1.OrderStatus) bool {
	for _, next := range transitions[from] {
		if next == to {
			return true
		}
	}
	return false
}

// mayPrecede reports whether an order in status before may later reach
// status after, by one or more transitions. As the graph has no cycles, an
// order that has both statuses entered before first whenever this holds,
// and after first otherwise.
func mayPrecede(before, after ordersv1.OrderStatus) bool {
	for _, next := range transitions[before] {
		if next == after || mayPrecede(next, after) {
			return true
		}
	}
	return false
}
