package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// AckOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) AckOrders(ctx context.Context, req *ordersv1.AckOrdersRequest) (*ordersv1.AckOrdersResponse, error) {
	settles, err := ackSettles(req, s.Tokens)
	if err != nil {
		return nil, err
	}
	for i, st := range settles {
		if !mayConsume(ctx, st.Ack.Consumer) {
			return nil, permissionDenied(fmt.Sprintf("acks[%d]: not allowed to ack on consumer %q", i, st.Ack.Consumer))
		}
	}
	res := &ordersv1.AckOrdersResponse{Results: make([]*ordersv1.AckResult, len(settles))}
	// Checked once the tokens are known to be ours: the epoch is the
	// stream's, which needs JetStream. Without it no ack could be applied
	// either: each says why, and nothing is sent.
	epochs, err := s.Store.Epochs(ctx)
	if err != nil {
		for i := range res.Results {
			res.Results[i] = &ordersv1.AckResult{Error: unconfirmedAck(err)}
		}
		return res, nil
	}
	if err := staleAcks(settles, s.Store.Layout(), epochs); err != nil {
		return nil, err
	}
	for i, r := range s.Acker.Apply(ctx, settles) {
		res.Results[i] = &ordersv1.AckResult{Confirmed: r.Confirmed}
		if !r.Confirmed {
			res.Results[i].Error = unconfirmedAck(r.Err)
			s.log.DebugContext(ctx, "ack not confirmed", "consumer", settles[i].Ack.Consumer, "seq", settles[i].Ack.StreamSeq, "err", r.Err)
		}
	}
	return res, nil
}

// unconfirmedAck tells the client why an ack was not confirmed, and what
// to do about it.
func unconfirmedAck(err error) string {
	switch {
	case errors.Is(err, consumers.ErrAckNotApplied):
		return "the consumer no longer exists (deleted, or expired while idle): nothing was acked"
	case errors.Is(err, eventstore.ErrUnavailable):
		return "JetStream is unreachable: the ack was not sent; ack again once it is back (acking again is safe)"
	default:
		return "JetStream did not confirm the ack in time: the event may already be due for redelivery, or JetStream is unreachable; acking again is safe"
	}
}
