package consumers

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Redriven dead letters reach a consumer's ConsumeOrders streams through
// its redrive consumer on ORDERS_REDRIVE (see package deadletters):
// each marker names an event of a partition's stream (ORDERS in layout 2),
// which is read and delivered like any other (in layout 3 by the fetch
// loop of partition 0, whatever the event's partition), with an ack token of the marker's delivery. Acking it acks
// the marker; its attempts are the marker's, counted from 1.

// How often a ConsumeOrders stream looks for redriven dead letters: once
// a second (one pull request, whatever the load, instead of one beside
// every fetch) when its consumer has a redrive consumer, and every few
// seconds for one to appear (a JetStream API request, costlier, and
// needed only after an admin's first redrive to the consumer).
const (
	redriveCheckInterval  = time.Second
	redriveLookupInterval = 5 * time.Second
)

// redriveSource is a stream's handle on its consumer's redrive consumer.
type redriveSource struct {
	cons jetstream.Consumer // nil until found (nothing was redriven yet)
	next time.Time          // when to look again
}

// deliverRedriven sends redriven dead letters, at most free of them, when
// it is time to look for them, and returns how many it sent. Only a broken
// stream is an error: a redrive consumer that cannot be read now is looked
// up again at the next check.
func (l *fetchLoop) deliverRedriven(ctx context.Context, now time.Time, free int) (int, error) {
	r := &l.redrive
	if now.Before(r.next) {
		return 0, nil
	}
	r.next = now.Add(redriveCheckInterval)
	if r.cons == nil {
		// The lookup must not hold up the stream's next heartbeat: while
		// JetStream elects new leaders it can take the whole operation
		// timeout. Cut short, it is tried again later.
		lookupCtx, cancel := context.WithDeadline(ctx, l.out.heartbeatDue(l.spec.Heartbeat))
		cons, err := l.w.redrives.RedriveConsumer(lookupCtx, l.spec.Consumer)
		cancel()
		if err != nil {
			r.next = now.Add(redriveLookupInterval)
			if !errors.Is(err, eventstore.ErrConsumerNotFound) {
				l.w.log.Debug("redrive consumer not read", "consumer", l.spec.Consumer, "err", err)
			}
			return 0, nil
		}
		r.cons = cons
	}
	batch, err := r.cons.FetchNoWait(free)
	if err != nil {
		r.cons = nil
		return 0, nil
	}
	sent, stop, err := l.deliver(ctx, batch, l.prepareRedriven)
	if err != nil {
		r.cons = nil // deleted, or its leader moved: look it up again
	}
	return sent, stop
}

// prepareRedriven reads the event a redrive marker names and signs the
// marker's delivery.
func (l *fetchLoop) prepareRedriven(msg jetstream.Msg) prepared {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return prepared{msg: msg}
	}
	part, seq, err := deadletters.ParseRedriveMarker(msg.Data())
	if err != nil {
		_ = msg.TermWithReason("not a redrive marker")
		return prepared{msg: msg}
	}
	// The event is read from the partition the marker names; a marker of
	// another layout (ErrInvalidArgument) can never be read.
	ev, err := l.w.store.EventAt(context.Background(), part, seq) // bounded by --nats-timeout
	switch {
	case errors.Is(err, eventstore.ErrNotFound), errors.Is(err, eventstore.ErrCorruptEvent), errors.Is(err, eventstore.ErrInvalidArgument):
		l.w.log.Warn("dropping a redriven dead letter whose event cannot be read", "consumer", l.spec.Consumer, "stream", part.Stream(), "seq", seq, "err", err)
		_ = msg.TermWithReason("redriven event cannot be read")
		return prepared{msg: msg}
	case err != nil:
		release(msg)
		return prepared{msg: msg}
	}
	p := prepared{msg: msg, seq: heldKey{stream: deadletters.RedriveStream, seq: meta.Sequence.Stream}, ok: true,
		delivery: Delivery{Event: ev, Attempt: meta.NumDelivered, NumPending: meta.NumPending}}
	if !l.spec.AutoAck {
		p.delivery.AckToken = l.w.tokens.SignIn(l.part, l.epoch, msg.Reply())
	}
	return p
}
