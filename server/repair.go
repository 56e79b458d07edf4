package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// RepairOrder implements ordersv1.QueueServiceServer.
func (q *QueueService) RepairOrder(ctx context.Context, req *ordersv1.RepairOrderRequest) (*ordersv1.RepairOrderResponse, error) {
	if err := validateOrderID(req.GetOrderId()); err != nil {
		return nil, err
	}
	report, err := q.store.Repair(ctx, req.GetOrderId(), req.GetValidateOnly())
	if errors.Is(err, eventstore.ErrNothingToRestore) && ctx.Err() == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "order %q: none of its %d stored messages is an order event: there is no state to restore",
			req.GetOrderId(), len(report.Unreadable))
	}
	if err != nil {
		return nil, toStatus(ctx, q.log, req.GetOrderId(), err)
	}
	res := &ordersv1.RepairOrderResponse{Order: report.Order, Repaired: report.Repaired}
	for _, u := range report.Unreadable {
		res.UnreadableEvents = append(res.UnreadableEvents, u.Proto())
	}
	return res, nil
}
