package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// EventAt reads the event at a sequence of partition p's stream (for
// redriven deliveries and dead letters): ErrNotFound when there is none,
// ErrCorruptEvent when it is not an order event.
func (s *Store) EventAt(ctx context.Context, p Partition, seq uint64) (*ordersv1.OrderEvent, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if p.Of != s.layout.Partitions || p.Number >= len(st.parts) {
		return nil, fmt.Errorf("%w: %s is not a partition of this deployment", ErrInvalidArgument, p)
	}
	ev, err := s.eventAt(ctx, st.of(p), seq)
	return ev, s.classify(err)
}

// eventAt reads the event at a sequence of a partition: ErrNotFound when
// there is none, ErrCorruptEvent when it is not an order event.
func (s *Store) eventAt(ctx context.Context, part partitionStreams, seq uint64) (*ordersv1.OrderEvent, error) {
	raw, err := part.events.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: no event at sequence %d", ErrNotFound, seq)
	}
	if err != nil {
		return nil, err
	}
	return part.DecodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
}
