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
		done, received, err := s.historyFetch(ctx, cons, last.event.GetSequence(), send)
		switch {
		case err != nil:
			return err
		case done:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case received == 0:
			return fmt.Errorf("%w: history of %s stopped before revision %d", ErrUnavailable, orderID, last.event.GetSequence())
		}
	}
}

// historyFetch runs one fetch of the history loop and sends what it
// brings; done once the event at lastSeq is sent. The fetch waits at most
// the store's timeout; sending to a slow client is bounded only by ctx.
func (s *Store) historyFetch(ctx context.Context, cons jetstream.Consumer, lastSeq uint64, send func(*ordersv1.OrderEvent) error) (done bool, received int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	batch, err := cons.Fetch(historyBatch, jetstream.FetchContext(ctx))
	if err != nil {
		return false, 0, s.classify(err)
	}
	for msg := range batch.Messages() {
		received++
		meta, err := msg.Metadata()
		if err != nil {
			return false, received, fmt.Errorf("%w: %v", ErrCorruptEvent, err)
		}
		ev, err := decodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
		if err != nil {
			return false, received, err
		}
		if err := send(ev.event); err != nil {
			return false, received, err
		}
		if meta.Sequence.Stream >= lastSeq {
			return true, received, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return false, received, s.classify(err)
	}
	return false, received, nil
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
