package eventstore

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// The durable consumers of the work queues and the review worker. The
// stream handles never leave the package: these are the only things done
// to the streams' consumers from outside it.
//
// A queue is one durable consumer per partition, all under the queue's
// name with the same settings: in layout 2 the one consumer of ORDERS, in
// layout 3 one on each stream ORDERS_<k>. Callers speak of the queue's
// config in layout 2's terms (queue_filters.go); each partition's consumer
// filters the same events under its own prefix.

// QueueConsumer is a queue's durable consumer on one partition.
type QueueConsumer struct {
	Partition Partition
	Consumer  jetstream.Consumer
	// Config is the consumer's config as JetStream reported it, in the
	// queue's terms (its filters as the queue's, not the partition's).
	Config jetstream.ConsumerConfig
}

func queueConsumerOf(p Partition, cons jetstream.Consumer) QueueConsumer {
	return QueueConsumer{Partition: p, Consumer: cons, Config: p.queueConfigOf(cons.CachedInfo().Config)}
}

// EnsureConsumers binds to the queue cfg.Durable on every partition,
// creating its consumer with cfg where it does not exist (if another node
// creates it first, that one), so a creation that failed half-way is
// completed by the next call. Existing consumers are left as they are:
// the caller compares their Config with what it wants. A new queue (on no
// partition yet) is refused with ErrTooManyConsumers when maxDurables (0:
// no cap) queues exist already. Errors are classified.
func (s *Store) EnsureConsumers(ctx context.Context, cfg jetstream.ConsumerConfig, maxDurables int) ([]QueueConsumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := make([]QueueConsumer, len(st.parts))
	var missing []int
	for i, part := range st.parts {
		cons, err := part.events.Consumer(ctx, cfg.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, i)
		case err != nil:
			return nil, s.classify(err)
		default:
			out[i] = queueConsumerOf(part.Partition, cons)
		}
	}
	if len(missing) == len(st.parts) {
		if err := checkDurableCap(ctx, st, maxDurables); err != nil {
			return nil, s.classify(err)
		}
	}
	for _, i := range missing {
		part := st.parts[i]
		cons, err := part.events.CreateConsumer(ctx, part.queueConfig(cfg))
		if errors.Is(err, jetstream.ErrConsumerExists) { // another node created it first
			cons, err = part.events.Consumer(ctx, cfg.Durable)
		}
		if err != nil {
			return nil, s.classify(err)
		}
		out[i] = queueConsumerOf(part.Partition, cons)
	}
	return out, nil
}

// CreateOrUpdateConsumers creates the queue cfg.Durable on every
// partition, or updates its consumers to cfg where they exist. Errors are
// classified.
func (s *Store) CreateOrUpdateConsumers(ctx context.Context, cfg jetstream.ConsumerConfig) ([]QueueConsumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := make([]QueueConsumer, len(st.parts))
	for i, part := range st.parts {
		cons, err := part.events.CreateOrUpdateConsumer(ctx, part.queueConfig(cfg))
		if err != nil {
			return nil, s.classify(err)
		}
		out[i] = queueConsumerOf(part.Partition, cons)
	}
	return out, nil
}
