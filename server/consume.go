package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
)

// ConsumeOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) ConsumeOrders(req *ordersv1.ConsumeOrdersRequest, stream grpc.ServerStreamingServer[ordersv1.ConsumeOrdersResponse]) error {
	spec, ctx, end, err := s.beginConsume(stream.Context(), req)
	if err != nil {
		return err
	}
	defer end()
	err = s.WorkQueues.Consume(ctx, spec, func(d consumers.Delivery) error {
		return stream.Send(&ordersv1.ConsumeOrdersResponse{
			Event:           d.Event,
			DeliveryAttempt: d.Attempt,
			NumPending:      d.NumPending,
			AckToken:        d.AckToken,
			Heartbeat:       d.Heartbeat,
		})
	})
	return toStatus(ctx, s.log, "", err)
}

// mayConsume reports whether the caller may consume from (and ack on) the
// durable consumer name: it needs the consumer's permission, and "admin"
// too for a reserved consumer (the order-review worker's).
func mayConsume(ctx context.Context, name string) bool {
	return auth.MayConsume(ctx, name) && (!consumers.Reserved(name) || auth.IsAdmin(ctx))
}

// beginConsume checks a consume request and the caller's right to its
// consumer, and takes one of the node's consume slots: what ConsumeOrders
// and StreamOrders do first. It returns the spec and the stream's context
// (which ends with the node's shutdown); end releases both.
func (s *OrderService) beginConsume(callCtx context.Context, req *ordersv1.ConsumeOrdersRequest) (consumers.ConsumeSpec, context.Context, func(), error) {
	spec, err := consumeSpec(req)
	if err != nil {
		return spec, nil, nil, err
	}
	if !mayConsume(callCtx, spec.Consumer) {
		return spec, nil, nil, permissionDenied(fmt.Sprintf("not allowed to consume from %q", spec.Consumer))
	}
	if err := s.consuming.acquire(); err != nil {
		return spec, nil, nil, err
	}
	ctx, cancel := s.streamContext(callCtx)
	return spec, ctx, func() { cancel(); s.consuming.release() }, nil
}
