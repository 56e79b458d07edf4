package migrate

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// republish publishes every event of ORDERS into its partition, in
// order, skipping what an earlier run published, then the claims of
// ORDER_IDS that have no event. It returns the summary and, for each old
// sequence in floors (ascending), the new sequence in each partition of
// the last message at or before it.
func (m *partitioning) republish(ctx context.Context, orders jetstream.Stream, floors []uint64) (Summary, map[uint64][]uint64, error) {
	r := partitionRepublisher{m: m, floors: floors, newSeq: map[uint64][]uint64{},
		pos: make([]uint64, m.layout.Partitions), have: make([]uint64, m.layout.Partitions), revision: map[string]uint64{}}
	for _, p := range m.layout.All() {
		stream, err := m.js.Stream(ctx, p.Stream())
		if err != nil {
			return Summary{}, nil, err
		}
		r.streams = append(r.streams, stream)
		r.have[p.Number] = stream.CachedInfo().State.LastSeq
	}
	info, err := orders.Info(ctx)
	if err != nil {
		return Summary{}, nil, err
	}
	last := info.State.LastSeq
	if marked := info.Config.Metadata[metadataLastSeq]; marked != strconv.FormatUint(last, 10) {
		return Summary{}, nil, fmt.Errorf("stream %s changed after the migration began (last sequence %d, was %s): is an ordersd node running? Stop every node; "+
			"then delete the partitions (`nats stream rm %s` …) and remove the marker of %s before starting again", eventstore.StreamName, last, marked,
			m.layout.All()[0].Stream(), eventstore.StreamName)
	}
	m.log.Info("publishing the events into their partitions", "events", info.State.Msgs, "already_published", r.have)
	if err := r.walk(ctx, orders, last, r.event); err != nil {
		return Summary{}, nil, err
	}
	for _, floor := range r.floors[r.nextFloor:] {
		r.newSeq[floor] = slices.Clone(r.pos)
	}
	index, err := m.js.Stream(ctx, eventstore.IndexStreamName)
	if err != nil {
		return Summary{}, nil, fmt.Errorf("stream %s: %w", eventstore.IndexStreamName, err)
	}
	if err := r.walk(ctx, index, index.CachedInfo().State.LastSeq, r.orphanClaim); err != nil {
		return Summary{}, nil, err
	}
	if err := r.flush(ctx); err != nil {
		return Summary{}, nil, err
	}
	for _, p := range m.layout.All() {
		info, err := r.streams[p.Number].Info(ctx)
		if err != nil {
			return Summary{}, nil, err
		}
		if want := r.pos[p.Number]; info.State.LastSeq != want || info.State.Msgs != want {
			return Summary{}, nil, fmt.Errorf("stream %s holds %d messages up to sequence %d after the migration, want %d: run `ordersd migrate --partitions %s` again",
				p.Stream(), info.State.Msgs, info.State.LastSeq, want, m.n())
		}
	}
	return Summary{Events: r.events, Orders: r.orders, Skipped: r.skipped, Reserved: r.reserved, Partitions: m.layout.Partitions,
		OldLastSeq: last, PartitionLastSeqs: slices.Clone(r.pos)}, r.newSeq, nil
}

// partitionRepublisher is the state of the republishing loop.
type partitionRepublisher struct {
	m       *partitioning
	streams []jetstream.Stream // by partition number
	// have is each partition's last sequence when the run began (what an
	// earlier run published); pos the sequence in each partition of the
	// last message the loop has placed there.
	have, pos []uint64
	// revision is each order's new revision (the sequence of its last
	// event in its partition): what its next event expects.
	revision                          map[string]uint64
	events, orders, skipped, reserved int
	// floors are the old sequences the consumers need, ascending; newSeq
	// maps each to pos as it was after the last message at or before it.
	floors    []uint64
	nextFloor int
	newSeq    map[uint64][]uint64
	pending   []jetstream.PubAckFuture
}

// walk hands every message of stream up to sequence last to handle, in
// order.
func (r *partitionRepublisher) walk(ctx context.Context, stream jetstream.Stream, last uint64,
	handle func(ctx context.Context, seq uint64, msg jetstream.Msg) error) error {
	if last == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream.CachedInfo().Config.Name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		if err := handle(ctx, meta.Sequence.Stream, msg); err != nil {
			return err
		}
		if meta.Sequence.Stream >= last {
			return nil
		}
	}
}

// event places the event of ORDERS at seq in its partition: after the
// claim of its order id, for an order's first event.
func (r *partitionRepublisher) event(ctx context.Context, seq uint64, msg jetstream.Msg) error {
	for r.nextFloor < len(r.floors) && r.floors[r.nextFloor] < seq {
		r.newSeq[r.floors[r.nextFloor]] = slices.Clone(r.pos)
		r.nextFloor++
	}
	ev, err := eventstore.Partition{}.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), seq, time.Time{})
	if err != nil {
		r.skipped++
		r.m.log.Warn("not an order event: kept in the backup only", "stream", eventstore.StreamName, "sequence", seq, "err", err)
		return nil
	}
	order := ev.GetOrder()
	key, p := eventstore.KeyOf(order), r.m.layout.Of(order.GetOrderId())
	revision, seen := r.revision[key.OrderID]
	if !seen {
		r.orders++
		if err := r.claim(ctx, p, key); err != nil {
			return err
		}
	}
	r.events++
	out := nats.NewMsg("")
	if out.Subject, err = p.EventSubject(order.GetStatus(), key); err != nil {
		return err
	}
	out.Data = msg.Data()
	for name, values := range msg.Headers() {
		// JetStream's own headers (Nats-Msg-Id, Nats-Expected-*) are not
		// the event's: the expected sequences below make a run again
		// publish nothing twice, whatever the duplicate window.
		if !strings.HasPrefix(name, "Nats-") {
			out.Header[name] = values
		}
	}
	seqInPartition := r.place(p)
	r.revision[key.OrderID] = seqInPartition
	return r.publish(ctx, p, out, r.m.layout.ExpectRevision(key, revision))
}

// claim places the claim of an order id in its partition, as a create
// writes it.
func (r *partitionRepublisher) claim(ctx context.Context, p eventstore.Partition, key eventstore.OrderKey) error {
	msg, expectNew := p.ClaimEntry(key)
	r.place(p)
	return r.publish(ctx, p, msg, expectNew)
}

// orphanClaim places a claim of ORDER_IDS whose order has no event (a
// create that died between its two writes): the id stays reserved for
// its customer, and the create's retry completes it.
func (r *partitionRepublisher) orphanClaim(ctx context.Context, seq uint64, msg jetstream.Msg) error {
	orderID, ok := strings.CutPrefix(msg.Subject(), eventstore.IndexSubject(""))
	key := eventstore.OrderKey{CustomerID: string(msg.Data()), OrderID: orderID}
	if !ok || key.Check() != nil {
		r.m.log.Warn("not an order-id claim: kept in the backup only", "stream", eventstore.IndexStreamName, "sequence", seq)
		return nil
	}
	if _, seen := r.revision[orderID]; seen {
		return nil
	}
	r.revision[orderID] = 0
	r.reserved++
	return r.claim(ctx, r.m.layout.Of(orderID), key)
}

// place gives the next message of partition p its sequence.
func (r *partitionRepublisher) place(p eventstore.Partition) uint64 {
	r.pos[p.Number]++
	return r.pos[p.Number]
}

// publish sends msg, the message at r.pos in p, with opts, expecting the
// message before it to be the partition's last: unless an earlier run
// published it (its last one is compared with msg).
func (r *partitionRepublisher) publish(ctx context.Context, p eventstore.Partition, msg *nats.Msg, opts ...jetstream.PublishOpt) error {
	seq := r.pos[p.Number]
	switch have := r.have[p.Number]; {
	case seq < have:
		return nil
	case seq == have:
		return r.checkPublished(ctx, p, seq, msg)
	}
	if len(r.pending) >= republishWindow {
		oldest := r.pending[0]
		r.pending = r.pending[1:]
		if err := settleFuture(ctx, oldest, r.m.n()); err != nil {
			return err
		}
	}
	opts = append(opts, jetstream.WithExpectStream(p.Stream()), jetstream.WithExpectLastSequence(seq-1))
	future, err := r.m.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return fmt.Errorf("publish on %s (run `ordersd migrate --partitions %s` again to go on): %w", msg.Subject, r.m.n(), err)
	}
	r.pending = append(r.pending, future)
	return nil
}

// checkPublished compares the last message an earlier run published in p
// with the one it should be.
func (r *partitionRepublisher) checkPublished(ctx context.Context, p eventstore.Partition, seq uint64, msg *nats.Msg) error {
	stored, err := r.streams[p.Number].GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("read %s sequence %d: %w", p.Stream(), seq, err)
	}
	if stored.Subject != msg.Subject || !bytes.Equal(stored.Data, msg.Data) {
		return fmt.Errorf("stream %s sequence %d is %s, not the message an earlier migration published there (%s): delete the partitions "+
			"(`nats stream rm %s` …; the orders are still in %s) and run `ordersd migrate --partitions %s` again", p.Stream(), seq, stored.Subject, msg.Subject,
			p.Stream(), eventstore.StreamName, r.m.n())
	}
	return nil
}

// flush waits for every publish in flight.
func (r *partitionRepublisher) flush(ctx context.Context) error {
	pending := r.pending
	r.pending = nil
	var first error
	for _, f := range pending {
		if err := settleFuture(ctx, f, r.m.n()); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// settleFuture waits for one publish.
func settleFuture(ctx context.Context, f jetstream.PubAckFuture, n string) error {
	var err error
	select {
	case <-f.Ok():
	case err = <-f.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("publish on %s (run `ordersd migrate --partitions %s` again to go on): %w", f.Msg().Subject, n, err)
	}
	return nil
}
