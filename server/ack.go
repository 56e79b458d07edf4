package server

import (
	"context"
	"fmt"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
)

// AckOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) AckOrders(ctx context.Context, req *ordersv1.AckOrdersRequest) (*ordersv1.AckOrdersResponse, error) {
	settles, err := ackSettles(req, s.Tokens)
	if err != nil {
		return nil, err
	}
	for i, st := range settles {
		if !auth.MayConsume(ctx, st.Ack.Consumer) {
			return nil, permissionDenied(fmt.Sprintf("acks[%d]: not allowed to ack on consumer %q", i, st.Ack.Consumer))
		}
	}
	res := &ordersv1.AckOrdersResponse{Results: make([]*ordersv1.AckResult, len(settles))}
	for i, r := range s.Acker.Apply(ctx, settles) {
		res.Results[i] = &ordersv1.AckResult{Confirmed: r.Confirmed}
		if !r.Confirmed {
			res.Results[i].Error = "JetStream did not confirm the ack in time: the event may already be due for redelivery, or JetStream is unreachable; acking again is safe"
			s.log.DebugContext(ctx, "ack not confirmed", "consumer", settles[i].Ack.Consumer, "seq", settles[i].Ack.StreamSeq, "err", r.Err)
		}
	}
	return res, nil
}
