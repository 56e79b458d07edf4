package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// readBatch is how many events one fetch of a read asks for.
const readBatch = 256

// ReadRequest says which stored events Read sends.
type ReadRequest struct {
	// Partition is the partition whose stream is read (the zero Partition:
	// ORDERS of layout 2).
	Partition Partition
	// Filters are subject filters (see Partition.FilterSubjects); every
	// event of the partition when empty.
	Filters []string
	// StartSequence, when not 0, starts at this stream sequence.
	StartSequence uint64
	// StartTime, when not zero (and StartSequence is 0), starts at the first
	// event stored at or after it. With neither, the read starts at the
	// first stored event.
	StartTime time.Time
	// UpTo, when not 0, ends the read once the event at or past this
	// sequence has been sent; otherwise the read ends when it has caught up
	// with the stream.
	UpTo uint64
	// Skipped, when set, is told about each message that is not an order
	// event (another publisher's, on ORDERS.>), and the read goes on
	// after it unless Skipped fails; without it such a message fails the
	// read with its *UnreadableError.
	Skipped func(*UnreadableError) error
}

// Read sends stored events in stream order, from a start position until it
// has caught up with the stream (or reached UpTo), and returns the sequence
// of the last message it read (0 when none). It reads through an ephemeral
// pull consumer (no acks, memory state) and a fetch loop, and deletes the
// consumer when done.
func (s *Store) Read(ctx context.Context, req ReadRequest, send func(*ordersv1.OrderEvent) error) (uint64, error) {
	r := reader{store: s, req: req, send: send}
	cons, more, err := r.openConsumer(ctx)
	if err != nil || !more {
		return 0, err
	}
	defer func() { r.store.deleteConsumer(r.stream, cons) }()
	for {
		done, received, err := r.fetch(ctx, cons)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, errDeliveriesLost) {
			// The reader sat blocked on a slow client past the consumer's
			// inactivity threshold and the server removed it, or messages
			// it delivered never reached the read: go on from the next
			// sequence with a new one.
			r.store.deleteConsumer(r.stream, cons)
			if cons, more, err = r.openConsumer(ctx); err != nil || !more {
				return r.last, err
			}
			continue
		}
		switch {
		case err != nil:
			return r.last, r.store.classify(err)
		case done:
			return r.last, nil
		case ctx.Err() != nil:
			return r.last, ctx.Err()
		case received == 0:
			return r.last, fmt.Errorf("%w: read stopped after sequence %d", ErrUnavailable, r.last)
		}
	}
}

// openConsumer creates the read's ephemeral pull consumer (no acks, memory
// state), from the request's start or after the last message read; more
// is false when nothing is stored from there on.
func (r *reader) openConsumer(ctx context.Context) (cons jetstream.Consumer, more bool, err error) {
	opCtx, cancel, stream, err := r.store.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer cancel()
	if r.req.Partition.Of != r.store.layout.Partitions || r.req.Partition.Number >= len(stream.parts) {
		return nil, false, fmt.Errorf("%w: %s is not a partition of this deployment", ErrInvalidArgument, r.req.Partition)
	}
	r.stream, r.delivered = stream.of(r.req.Partition).events, 0
	cfg := jetstream.ConsumerConfig{
		Description:   "ordersd read",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// Removed by the server if this process dies before deleting it.
		InactiveThreshold: time.Minute,
	}
	switch {
	case r.last != 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.last+1
	case r.req.StartSequence != 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.req.StartSequence
	case !r.req.StartTime.IsZero():
		start := r.req.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	switch {
	case len(r.req.Filters) == 0 && r.req.Partition.Of > 0:
		cfg.FilterSubject = r.req.Partition.Subjects() // not the claims beside the events
	case len(r.req.Filters) == 1:
		cfg.FilterSubject = r.req.Filters[0]
	default:
		cfg.FilterSubjects = r.req.Filters
	}
	cons, err = r.stream.CreateConsumer(opCtx, cfg)
	if err != nil {
		return nil, false, r.store.classify(err)
	}
	if cons.CachedInfo().NumPending == 0 {
		r.store.deleteConsumer(r.stream, cons)
		return nil, false, nil // nothing stored from there on
	}
	return cons, true, nil
}

// reader is the state of one Read.
type reader struct {
	store  *Store
	req    ReadRequest
	send   func(*ordersv1.OrderEvent) error
	stream jetstream.Stream
	last   uint64 // sequence of the last message read
	// delivered is the consumer's delivery sequence of that message: each
	// delivery of the read's consumer (no acks, so no redelivery) comes
	// one after the one before.
	delivered uint64
}

// errDeliveriesLost says that the read's consumer delivered messages the
// read never got: those of a fetch whose deadline passed while the server
// was still sending its batch, which the server counts as delivered.
var errDeliveriesLost = errors.New("the read's consumer delivered messages the read did not receive")

// fetch runs one fetch of the read loop and sends what it brings; done
// once caught up or past UpTo. The fetch waits at most the store's
// timeout; sending to a slow client is bounded only by ctx.
func (r *reader) fetch(ctx context.Context, cons jetstream.Consumer) (done bool, received int, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.store.opTimeout)
	defer cancel()
	batch, err := cons.Fetch(readBatch, jetstream.FetchContext(ctx))
	if err != nil {
		return false, 0, err
	}
	for msg := range batch.Messages() {
		received++
		meta, err := msg.Metadata()
		if err != nil {
			return false, received, fmt.Errorf("%w: %v", ErrCorruptEvent, err)
		}
		if meta.Sequence.Consumer != r.delivered+1 {
			return false, received, errDeliveriesLost
		}
		r.last, r.delivered = meta.Sequence.Stream, meta.Sequence.Consumer
		ev, err := r.req.Partition.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
		r.store.unreadable.Note(err)
		switch {
		case err != nil && r.req.Skipped != nil:
			if err := r.req.Skipped(AsUnreadable(err)); err != nil {
				return false, received, err
			}
		case err != nil:
			return false, received, err
		default:
			if err := r.send(ev); err != nil {
				return false, received, err
			}
		}
		if (r.req.UpTo != 0 && meta.Sequence.Stream >= r.req.UpTo) || meta.NumPending == 0 {
			return true, received, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return false, received, err
	}
	return false, received, nil
}

// History sends every event of one order, oldest first, up to the event
// that was the order's last when History began. It reads them one at a
// time from the stream leader of its partition ("next message on the
// order's subjects from sequence n"), without a consumer: an order has a handful of
// events, and for those, reads are cheaper than creating, fetching from
// and deleting a consumer (ordersbench's history rows compare the two; see
// docs/performance.md).
//
// A message among them that is not an order event (another publisher's,
// since repaired: see Repair) goes to skipped, in its place, when skipped
// is not nil, and fails the read otherwise. When the order's last message
// is such a message, History fails with its *UnreadableError at once.
func (s *Store) History(ctx context.Context, orderID string, send func(*ordersv1.OrderEvent) error, skipped func(*UnreadableError) error) error {
	opCtx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	part := st.of(s.layout.Of(orderID))
	key, err := s.locate(opCtx, part, orderID)
	if err != nil {
		return s.classify(err)
	}
	last, err := s.lastEvent(opCtx, part, key)
	if err != nil {
		return s.classify(err)
	}
	filter, _ := part.OrderSubjects(key) // valid: lastEvent checked it
	sc := newScan(part, []string{filter}, 0)
	for sc.cursor < last.event.GetSequence() {
		batch, err := sc.next(opCtx, 1)
		if err != nil {
			return s.classify(err)
		}
		if len(batch) == 0 {
			return fmt.Errorf("%w: order %s: events up to sequence %d not found", ErrUnavailable, orderID, last.event.GetSequence())
		}
		raw := batch[0]
		ev, err := part.DecodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
		s.unreadable.Note(err)
		switch {
		case err != nil && skipped != nil:
			err = skipped(AsUnreadable(err))
		case err == nil:
			err = send(ev)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteConsumer removes a finished ephemeral consumer; a failure only
// leaves it to its inactivity threshold.
func (s *Store) deleteConsumer(stream jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	name := cons.CachedInfo().Name
	if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Debug("read consumer not deleted; it expires by itself", "consumer", name, "err", err)
	}
}
