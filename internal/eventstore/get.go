package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Get returns an order's current state: the last event on ORDERS.*.<id>.
func (s *Store) Get(ctx context.Context, orderID string) (*ordersv1.Order, error) {
	ctx, cancel, stream, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	last, err := s.lastEvent(ctx, stream, orderID)
	if err != nil {
		return nil, s.classify(err)
	}
	return last.event.GetOrder(), nil
}

func (s *Store) lastEvent(ctx context.Context, stream jetstream.Stream, orderID string) (storedEvent, error) {
	filter, err := OrderSubjects(orderID)
	if err != nil {
		return storedEvent{}, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return storedEvent{}, fmt.Errorf("%w: %s", ErrNotFound, orderID)
	}
	if err != nil {
		return storedEvent{}, err
	}
	return decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
}
