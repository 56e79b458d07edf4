package server

import (
	"google.golang.org/grpc"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// GetOrderHistory implements ordersv1.OrderServiceServer.
func (s *OrderService) GetOrderHistory(req *ordersv1.GetOrderHistoryRequest, stream grpc.ServerStreamingServer[ordersv1.GetOrderHistoryResponse]) error {
	if err := validateOrderID(req.GetOrderId()); err != nil {
		return err
	}
	ctx := stream.Context()
	err := s.Store.History(ctx, req.GetOrderId(), func(ev *ordersv1.OrderEvent) error {
		return stream.Send(&ordersv1.GetOrderHistoryResponse{Event: ev})
	}, func(u *eventstore.UnreadableError) error {
		return stream.Send(&ordersv1.GetOrderHistoryResponse{Skipped: u.Proto()})
	})
	return toStatus(ctx, s.log, req.GetOrderId(), err)
}
