package server

import (
	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// watchSpec checks a WatchOrders request and turns it into the watch it
// asks for.
func watchSpec(req *ordersv1.WatchOrdersRequest) (consumers.WatchSpec, error) {
	var v violations
	v.statuses("statuses", req.GetStatuses())
	v.id("order_id", req.GetOrderId(), eventstore.MaxIDLen, false)
	v.id("customer_id", req.GetCustomerId(), eventstore.MaxIDLen, false)
	spec := consumers.WatchSpec{
		Statuses:   req.GetStatuses(),
		OrderID:    req.GetOrderId(),
		CustomerID: req.GetCustomerId(),
		Heartbeat:  v.heartbeat("heartbeat_interval", req.GetHeartbeatInterval()),
	}
	switch start := req.GetStart().(type) {
	case *ordersv1.WatchOrdersRequest_ReplayAll:
		spec.ReplayAll = start.ReplayAll
	case *ordersv1.WatchOrdersRequest_StartSequence:
		if start.StartSequence == 0 {
			v.add("start_sequence", "must be 1 or more")
		}
		spec.StartSequence = start.StartSequence
	case *ordersv1.WatchOrdersRequest_StartTime:
		spec.StartTime = v.timestamp("start_time", start.StartTime)
	case *ordersv1.WatchOrdersRequest_ResumeAfter:
		if start.ResumeAfter == "" {
			v.add("resume_after", "must not be empty: pass back a resume_position of WatchOrders")
		}
		spec.ResumeAfter = start.ResumeAfter
	}
	return spec, v.err()
}
