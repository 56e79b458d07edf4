package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Get returns an order's current state: the last event on
// ORDERS.*.<customer_id>.<id>, the customer found in the order-id index.
func (s *Store) Get(ctx context.Context, orderID string) (*ordersv1.Order, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	key, err := s.locate(ctx, st, orderID)
	if err != nil {
		return nil, s.classify(err)
	}
	last, err := s.lastEvent(ctx, st.orders, key)
	if err != nil {
		return nil, s.classify(err)
	}
	return last.event.GetOrder(), nil
}

// lastEvent reads the last event of the order with key k; ErrNotFound
// when it has none (its index entry may exist: see index.go), and an
// *UnreadableError, reported once, when its last message is not an order
// event (QueueService.RepairOrder restores the order).
func (s *Store) lastEvent(ctx context.Context, stream jetstream.Stream, k OrderKey) (storedEvent, error) {
	filter, err := OrderSubjects(k)
	if err != nil {
		return storedEvent{}, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return storedEvent{}, fmt.Errorf("%w: %s", ErrNotFound, k.OrderID)
	}
	if err != nil {
		return storedEvent{}, err
	}
	ev, err := decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
	s.unreadable.Note(err)
	return ev, err
}
