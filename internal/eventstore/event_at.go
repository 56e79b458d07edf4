package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// EventAt reads the event at an ORDERS sequence (for redriven deliveries
// and dead letters): ErrNotFound when there is none, ErrCorruptEvent when
// it is not an order event.
func (s *Store) EventAt(ctx context.Context, seq uint64) (*ordersv1.OrderEvent, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	orders := st.orders
	ev, err := s.eventAt(ctx, orders, seq)
	return ev, s.classify(err)
}

// eventAt reads the event at an ORDERS sequence: ErrNotFound when there is
// none, ErrCorruptEvent when it is not an order event.
func (s *Store) eventAt(ctx context.Context, orders jetstream.Stream, seq uint64) (*ordersv1.OrderEvent, error) {
	raw, err := orders.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: no event at sequence %d", ErrNotFound, seq)
	}
	if err != nil {
		return nil, err
	}
	return DecodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
}
