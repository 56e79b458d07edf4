package server

import (
	"context"
	"io"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// createPipelineDepth bounds the creates of one CreateOrders stream that
// are in flight (published, answer not yet sent). It keeps JetStream busy
// while bounding memory; a client sending faster is slowed by gRPC flow
// control.
const createPipelineDepth = 1024

// pendingResult is one order of a CreateOrders stream on its way: either
// already answered (a validation error), or waiting for JetStream.
type pendingResult struct {
	orderID string
	pending *eventstore.PendingCreate
	done    *ordersv1.CreateOrdersResponse
}

// CreateOrders implements ordersv1.OrderServiceServer. One goroutine
// receives, validates and publishes without waiting; this one waits for
// each answer in turn and sends the results in request order.
func (s *OrderService) CreateOrders(stream grpc.BidiStreamingServer[ordersv1.CreateOrdersRequest, ordersv1.CreateOrdersResponse]) error {
	ctx, cancel := s.streamContext(stream.Context())
	defer cancel()
	queue := make(chan pendingResult, createPipelineDepth)
	received := make(chan error, 1)
	go func() {
		defer close(queue)
		received <- s.receiveCreates(ctx, stream, queue)
	}()
	for r := range queue {
		res := r.done
		if res == nil {
			// Wait for JetStream's answer even when the node begins to shut
			// down: the create was sent and its client deserves its result
			// (Wait is bounded by the store's timeout).
			out, err := r.pending.Wait(context.WithoutCancel(ctx))
			if err != nil {
				res = &ordersv1.CreateOrdersResponse{Error: orderError(toStatus(ctx, s.log, r.orderID, err))}
			} else {
				res = &ordersv1.CreateOrdersResponse{Order: out.Order, Duplicate: out.Duplicate}
			}
		}
		if err := stream.Send(res); err != nil {
			return toStatus(ctx, s.log, "", err)
		}
	}
	return toStatus(ctx, s.log, "", <-received)
}

// receiveCreates reads the stream until the client closes its side,
// starting each valid create and queueing every order's result.
func (s *OrderService) receiveCreates(ctx context.Context, stream grpc.BidiStreamingServer[ordersv1.CreateOrdersRequest, ordersv1.CreateOrdersResponse], queue chan<- pendingResult) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		order := req.GetOrder()
		r := pendingResult{orderID: order.GetOrderId()}
		if err := validateCreate(order); err != nil {
			r.done = &ordersv1.CreateOrdersResponse{Error: orderError(err)}
		} else if r.pending, err = s.Store.CreateAsync(ctx, newOrder(order)); err != nil {
			r.done = &ordersv1.CreateOrdersResponse{Error: orderError(toStatus(ctx, s.log, r.orderID, err))}
		}
		select {
		case queue <- r:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// orderError is the per-order form of a status error.
func orderError(err error) *ordersv1.OrderError {
	st := status.Convert(err)
	oe := &ordersv1.OrderError{Code: code.Code(st.Code()).String(), Message: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				oe.FieldViolations = append(oe.FieldViolations, &ordersv1.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return oe
}
