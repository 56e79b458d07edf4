package server

import (
	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// WatchOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) WatchOrders(req *ordersv1.WatchOrdersRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	spec, err := watchSpec(req)
	if err != nil {
		return err
	}
	if err := s.watching.acquire(); err != nil {
		return err
	}
	defer s.watching.release()
	ctx, cancel := s.streamContext(stream.Context())
	defer cancel()
	err = s.Watcher.Watch(ctx, spec, func(u consumers.WatchUpdate) error {
		encoded, err := u.EncodedResponse()
		switch {
		case err != nil:
			return err
		case encoded != nil: // a live event: the same bytes for every watcher
			return stream.SendMsg(encodedMessage(encoded))
		}
		res := &ordersv1.WatchOrdersResponse{Event: u.Event, CaughtUp: u.CaughtUp, Heartbeat: u.Heartbeat, ResumePosition: u.ResumePosition}
		if u.Skipped != nil {
			res.Skipped = u.Skipped.Proto()
		}
		return stream.Send(res)
	})
	return toStatus(ctx, s.log, req.GetOrderId(), err)
}
