package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Get returns an order's current state: the last event on the order's
// subjects in its partition, the customer found in its order-id claim.
func (s *Store) Get(ctx context.Context, orderID string) (*ordersv1.Order, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	part := st.of(s.layout.Of(orderID))
	key, err := s.locate(ctx, part, orderID)
	if err != nil {
		return nil, s.classify(err)
	}
	last, err := s.lastEvent(ctx, part, key)
	if err != nil {
		return nil, s.classify(err)
	}
	return last.event.GetOrder(), nil
}

// lastEvent reads the last event of the order with key k; ErrNotFound
// when it has none (its index entry may exist: see index.go), and an
// *UnreadableError, reported once, when its last message is not an order
// event (QueueService.RepairOrder restores the order).
func (s *Store) lastEvent(ctx context.Context, part partitionStreams, k OrderKey) (storedEvent, error) {
	filter, err := part.OrderSubjects(k)
	if err != nil {
		return storedEvent{}, err
	}
	raw, err := part.events.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return storedEvent{}, fmt.Errorf("%w: %s", ErrNotFound, k.OrderID)
	}
	if err != nil {
		return storedEvent{}, err
	}
	ev, err := part.decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
	s.unreadable.Note(err)
	return ev, err
}
