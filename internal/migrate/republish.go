package migrate

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// republishWindow bounds the publishes of a migration in flight at once.
const republishWindow = 1024

// republish publishes every event of the backup on its new subject, in
// order, from where an earlier run stopped. It returns the summary of the
// events and, for each old ack floor of a recorded consumer, the new
// sequence it maps to.
func (m *migration) republish(ctx context.Context, backup jetstream.Stream) (Summary, map[uint64]uint64, error) {
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return Summary{}, nil, err
	}
	floors, err := recordedFloors(ctx, backup)
	if err != nil {
		return Summary{}, nil, err
	}
	r := republisher{m: m, orders: orders, done: orders.CachedInfo().State.LastSeq, floors: floors,
		newSeq: map[uint64]uint64{}, customers: map[string]string{}}
	last := backup.CachedInfo().State.LastSeq
	m.log.Info("publishing the events in the new layout", "events", backup.CachedInfo().State.Msgs, "already_published", r.done)
	if last > 0 {
		cons, err := backup.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return Summary{}, nil, err
		}
		it, err := cons.Messages()
		if err != nil {
			return Summary{}, nil, err
		}
		defer it.Stop()
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return Summary{}, nil, fmt.Errorf("read %s: %w", BackupStreamName, err)
			}
			meta, err := msg.Metadata()
			if err != nil {
				return Summary{}, nil, err
			}
			if err := r.event(ctx, meta.Sequence.Stream, msg.Subject(), msg.Headers(), msg.Data()); err != nil {
				return Summary{}, nil, err
			}
			if meta.Sequence.Stream >= last {
				break
			}
		}
	}
	if err := r.flush(ctx); err != nil {
		return Summary{}, nil, err
	}
	for _, floor := range r.floors[r.nextFloor:] {
		r.newSeq[floor] = r.pos
	}
	info, err := orders.Info(ctx)
	if err != nil {
		return Summary{}, nil, err
	}
	if info.State.LastSeq != r.pos || info.State.Msgs != r.pos {
		return Summary{}, nil, fmt.Errorf("stream %s holds %d events up to sequence %d after the migration, want %d: run `ordersd migrate` again",
			eventstore.StreamName, info.State.Msgs, info.State.LastSeq, r.pos)
	}
	m.customers = r.customers
	return Summary{Events: int(r.pos), Orders: r.indexed, Skipped: r.skipped,
		OldLastSeq: last, NewLastSeq: r.pos}, r.newSeq, nil
}

// republisher is the state of the republishing loop.
type republisher struct {
	m      *migration
	orders jetstream.Stream
	// done is how many events an earlier run published already; pos how
	// many events of the backup have been seen (the new sequence of the
	// last one).
	done, pos uint64
	indexed   int               // orders, each with its index entry
	skipped   int               // messages that are not order events
	customers map[string]string // order id → customer id
	// floors are the old sequences the recorded consumers need
	// (recordedFloors), ascending; newSeq maps each to the new sequence of
	// the last event at or before it.
	floors    []uint64
	nextFloor int
	newSeq    map[uint64]uint64
	pending   []pendingPublish
}

// pendingPublish is a publish of the migration awaiting its answer.
type pendingPublish struct {
	future jetstream.PubAckFuture
	key    eventstore.OrderKey // of an index entry; zero for an event
}

// event handles the backup's message at seq: an order event is published
// on its new subject (after its order's index entry, for the order's
// first event), unless an earlier run published it already; anything
// else is skipped.
func (r *republisher) event(ctx context.Context, seq uint64, subject string, header nats.Header, data []byte) error {
	for r.nextFloor < len(r.floors) && r.floors[r.nextFloor] < seq {
		r.newSeq[r.floors[r.nextFloor]] = r.pos
		r.nextFloor++
	}
	order, err := decodeLayout1(subject, data)
	if err != nil {
		r.skipped++
		r.m.log.Warn("not an order event: kept in the backup only", "stream", BackupStreamName, "sequence", seq, "err", err)
		return nil
	}
	key := eventstore.KeyOf(order)
	if _, seen := r.customers[key.OrderID]; !seen {
		r.customers[key.OrderID] = key.CustomerID
		r.indexed++
		entry, expectNew := eventstore.IndexEntry(key)
		if err := r.submit(ctx, entry, key, expectNew); err != nil {
			return err
		}
	}
	r.pos++
	switch {
	case r.pos < r.done:
		return nil
	case r.pos == r.done:
		return r.checkPublished(ctx, data)
	}
	msg := nats.NewMsg("")
	if msg.Subject, err = eventstore.EventSubject(order.GetStatus(), key); err != nil {
		return err
	}
	msg.Data = data
	for name, values := range header {
		// JetStream's own headers (Nats-Msg-Id, Nats-Expected-*) are not
		// the event's: a message id would be deduplicated against other
		// events published within the window.
		if !strings.HasPrefix(name, "Nats-") {
			msg.Header[name] = values
		}
	}
	return r.submit(ctx, msg, eventstore.OrderKey{}, jetstream.WithExpectStream(eventstore.StreamName), jetstream.WithExpectLastSequence(r.pos-1))
}

// checkPublished compares the last event an earlier run published with
// the backup's event it should be.
func (r *republisher) checkPublished(ctx context.Context, data []byte) error {
	stored, err := r.orders.GetMsg(ctx, r.pos)
	if err != nil {
		return fmt.Errorf("read %s sequence %d: %w", eventstore.StreamName, r.pos, err)
	}
	if !bytes.Equal(stored.Data, data) {
		return fmt.Errorf("stream %s sequence %d is not the event an earlier migration published there: "+
			"delete %s (`nats stream rm %s`; its events are kept in %s) and run `ordersd migrate` again", eventstore.StreamName, r.pos, eventstore.StreamName, eventstore.StreamName, BackupStreamName)
	}
	return nil
}

// submit publishes msg without waiting, keeping at most republishWindow
// publishes in flight: when full, it waits for the oldest.
func (r *republisher) submit(ctx context.Context, msg *nats.Msg, key eventstore.OrderKey, opts ...jetstream.PublishOpt) error {
	if len(r.pending) >= republishWindow {
		oldest := r.pending[0]
		r.pending = r.pending[1:]
		if err := r.settle(ctx, oldest); err != nil {
			return err
		}
	}
	future, err := r.m.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return fmt.Errorf("publish on %s (run `ordersd migrate` again to go on): %w", msg.Subject, err)
	}
	r.pending = append(r.pending, pendingPublish{future: future, key: key})
	return nil
}

// flush waits for every publish in flight.
func (r *republisher) flush(ctx context.Context) error {
	pending := r.pending
	r.pending = nil
	var first error
	for _, p := range pending {
		if err := r.settle(ctx, p); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// settle waits for one publish. An index entry that is there already is
// accepted when it names the same customer (an earlier run wrote it).
func (r *republisher) settle(ctx context.Context, p pendingPublish) error {
	var err error
	select {
	case <-p.future.Ok():
	case err = <-p.future.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && p.key != (eventstore.OrderKey{}) && eventstore.IsWrongLastSequence(err) {
		err = r.checkIndexed(ctx, p.key)
	}
	if err != nil {
		return fmt.Errorf("publish on %s (run `ordersd migrate` again to go on): %w", p.future.Msg().Subject, err)
	}
	return nil
}

// checkIndexed accepts an index entry that is there already when it names
// the order's customer.
func (r *republisher) checkIndexed(ctx context.Context, k eventstore.OrderKey) error {
	index, err := r.m.js.Stream(ctx, eventstore.IndexStreamName)
	if err != nil {
		return err
	}
	raw, err := index.GetLastMsgForSubject(ctx, eventstore.IndexSubject(k.OrderID))
	if err != nil {
		return err
	}
	if customer := string(raw.Data); customer != k.CustomerID {
		return fmt.Errorf("%w: the order-id index gives order %s to customer %q, its events to %q", eventstore.ErrAlreadyExists, k.OrderID, customer, k.CustomerID)
	}
	return nil
}

// decodeLayout1 reads an event stored in layout 1 (ORDERS.<event>.<order_id>),
// checking that its subject and payload agree.
func decodeLayout1(subject string, data []byte) (*ordersv1.Order, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != eventstore.StreamName {
		return nil, fmt.Errorf("%w: subject %q is not %s.<event>.<order_id>", eventstore.ErrCorruptEvent, subject, eventstore.StreamName)
	}
	order := &ordersv1.Order{}
	if err := proto.Unmarshal(data, order); err != nil {
		return nil, fmt.Errorf("%w: %v", eventstore.ErrCorruptEvent, err)
	}
	status, ok := eventstore.StatusOfEventType(parts[1])
	if !ok || order.GetStatus() != status || order.GetOrderId() != parts[2] || eventstore.KeyOf(order).Check() != nil {
		return nil, fmt.Errorf("%w: payload (%s, %s, %v) does not match subject %q", eventstore.ErrCorruptEvent,
			order.GetCustomerId(), order.GetOrderId(), order.GetStatus(), subject)
	}
	return order, nil
}
