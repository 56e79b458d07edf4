package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// historyBatch is how many events one fetch asks for. An order has a handful
// of events, so one fetch nearly always reads the whole history.
const historyBatch = 32

// History calls send with every event of one order, oldest first, and
// returns once the event that was the order's last when History began has
// been sent. It reads through an ephemeral pull consumer filtered on
// ORDERS.*.<id> (no acks, memory state) and deletes it when done.
func (s *Store) History(ctx context.Context, orderID string, send func(*ordersv1.OrderEvent) error) error {
	opCtx, cancel, stream, err := s.begin(ctx)
	if err != nil {
		return err
	}
	last, err := s.lastEvent(opCtx, stream, orderID)
	if err != nil {
		cancel()
		return s.classify(err)
	}
	filter, _ := OrderSubjects(orderID) // valid: lastEvent checked it
	cons, err := stream.CreateConsumer(opCtx, jetstream.ConsumerConfig{
		Description:   "ordersd GetOrderHistory " + orderID,
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// Removed by the server if this process dies before deleting it.
		InactiveThreshold: time.Minute,
	})
	cancel()
	if err != nil {
		return s.classify(err)
	}
	defer s.deleteConsumer(stream, cons)

	for {
		// Each fetch is bounded by the store's timeout; sending to a slow
		// client is bounded only by the caller's context.
		batch, err := cons.Fetch(historyBatch, jetstream.FetchMaxWait(s.opTimeout), jetstream.FetchContext(ctx))
		if err != nil {
			return s.classify(err)
		}
		received := 0
		for msg := range batch.Messages() {
			received++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptEvent, err)
			}
			ev, err := decodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
			if err != nil {
				return err
			}
			if err := send(ev.event); err != nil {
				return err
			}
			if meta.Sequence.Stream >= last.event.GetSequence() {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return s.classify(err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if received == 0 {
			return fmt.Errorf("%w: history of %s stopped before revision %d", ErrUnavailable, orderID, last.event.GetSequence())
		}
	}
}

// deleteConsumer removes a finished ephemeral consumer; a failure only
// leaves it to its inactivity threshold.
func (s *Store) deleteConsumer(stream jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	name := cons.CachedInfo().Name
	if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Debug("history consumer not deleted; it expires by itself", "consumer", name, "err", err)
	}
}
