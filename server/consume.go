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
	spec, err := consumeSpec(req)
	if err != nil {
		return err
	}
	if !mayConsume(stream.Context(), spec.Consumer) {
		return permissionDenied(fmt.Sprintf("not allowed to consume from %q", spec.Consumer))
	}
	if err := s.consuming.acquire(); err != nil {
		return err
	}
	defer s.consuming.release()
	ctx, cancel := s.streamContext(stream.Context())
	defer cancel()
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
