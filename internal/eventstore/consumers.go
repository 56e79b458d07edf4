package eventstore

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// The durable consumers of the stream ORDERS, for the work queues and the
// review worker. The stream handle itself never leaves the package: these
// are the only things done to the stream's consumers from outside it.

// EnsureConsumer binds to the durable consumer cfg.Durable, creating it
// with cfg when it does not exist (if another node creates it first, that
// one). An existing consumer is left as it is: the caller compares its
// CachedInfo().Config with what it wants. A new one is refused with
// ErrTooManyConsumers when maxDurables (0: no cap) durable consumers exist
// already. Errors are classified.
func (s *Store) EnsureConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, maxDurables int) (jetstream.Consumer, error) {
	ctx, cancel, stream, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	cons, err := stream.parts[0].events.Consumer(ctx, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if err := checkDurableCap(ctx, stream.parts[0].events, maxDurables); err != nil {
			return nil, s.classify(err)
		}
		cons, err = stream.parts[0].events.CreateConsumer(ctx, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) { // another node created it first
			cons, err = stream.parts[0].events.Consumer(ctx, cfg.Durable)
		}
	}
	if err != nil {
		return nil, s.classify(err)
	}
	return cons, nil
}

// CreateOrUpdateConsumer creates the durable consumer cfg.Durable, or
// updates it to cfg when it exists. Errors are classified.
func (s *Store) CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	ctx, cancel, stream, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	cons, err := stream.parts[0].events.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, s.classify(err)
	}
	return cons, nil
}
