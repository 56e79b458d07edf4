package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Migrate rewrites a stream ORDERS in subject layout 1
// (ORDERS.<event>.<order_id>) into this build's Layout, so that nothing is
// lost if it dies at any point and running it again finishes the job:
//
//  1. copy: the stream BackupStreamName mirrors ORDERS until it holds
//     every message, with the same sequences; each durable consumer of
//     ORDERS is recorded on it (config and ack floor, see
//     migrate_consumers.go);
//  2. the copy stops mirroring (it is now the backup) and ORDERS is
//     deleted, then created again with the new settings and a marker that
//     makes every node refuse it until the migration ends;
//  3. every event of the backup is published again, in order, on its new
//     subject (the customer read from the payload), each expecting the
//     one before it, after the order's entry in the order-id index;
//  4. each recorded consumer is created again with its filters in the new
//     layout, just after the new sequence of its old ack floor;
//  5. the marker is removed; the backup is kept, marked done.
//
// Which step a run starts from is read from the backup's metadata
// (MetadataMigration); a run with no backup and ORDERS already in Layout
// does nothing. Every node must be stopped while it runs: a node that
// writes to ORDERS during the copy makes the migration fail rather than
// lose the write.
func Migrate(ctx context.Context, js jetstream.JetStream, opts StreamOptions, log *slog.Logger) (MigrateSummary, error) {
	m := migration{js: js, opts: opts.withDefaults(), log: log}
	return m.run(ctx)
}

// BackupStreamName is the stream that keeps the layout 1 events after a
// migration (and during it, the copy it starts from). Delete it once the
// migrated stream has been checked: `nats stream rm ORDERS_LAYOUT1`.
const BackupStreamName = StreamName + "_LAYOUT1"

// MetadataMigration is the metadata key that tells how far a migration
// went: on the backup, one of the migration phases; on ORDERS,
// migrationUnderWay while its events are being published again.
const MetadataMigration = "ordersd_migration"

// Migration phases, recorded on the backup.
const (
	phaseCopying = "copying" // mirroring ORDERS; ORDERS untouched
	phaseCopied  = "copied"  // the backup holds every event; ORDERS may be gone
	phaseDone    = "done"    // ORDERS is in Layout, consumers recreated
)

// migrationUnderWay marks ORDERS while a migration fills it (nodes refuse it).
const migrationUnderWay = "under way: run `ordersd migrate` to finish it"

// republishWindow bounds the publishes of a migration in flight at once.
const republishWindow = 1024

// copyPoll is how often the copy step looks at the mirror's progress.
const copyPoll = 100 * time.Millisecond

// MigrateSummary says what a migration did.
type MigrateSummary struct {
	// NothingToDo explains why nothing was done (ORDERS already in Layout,
	// or no stream ORDERS); empty when the migration ran.
	NothingToDo string
	// Events is the number of events published in the new layout; Orders
	// the number of orders (index entries); Skipped the messages of the old
	// stream that are not order events (kept in the backup only).
	Events, Orders, Skipped int
	// Consumers names the durable consumers created again, each with its
	// new start sequence.
	Consumers []MigratedConsumer
	// OldLastSeq and NewLastSeq are the last stream sequences before and
	// after: every revision changes.
	OldLastSeq, NewLastSeq uint64
	// Backup is the stream that keeps the old events.
	Backup string
	// Took is how long the run took.
	Took time.Duration
}

// migration is the state of one Migrate run.
type migration struct {
	js        jetstream.JetStream
	opts      StreamOptions
	log       *slog.Logger
	customers map[string]string // order id → customer id, once republished
}

// run goes through the steps of Migrate, from the one the backup's phase
// says comes next.
func (m *migration) run(ctx context.Context) (MigrateSummary, error) {
	start := time.Now()
	backup, err := m.js.Stream(ctx, BackupStreamName)
	if err != nil && !isStreamMissing(err) {
		return MigrateSummary{}, err
	}
	phase := ""
	if backup != nil {
		if phase = backup.CachedInfo().Config.Metadata[MetadataMigration]; phase == "" {
			return MigrateSummary{}, fmt.Errorf("a stream %s exists that `ordersd migrate` did not make: rename or delete it first", BackupStreamName)
		}
	}
	if phase == "" {
		if done, why, err := m.nothingToDo(ctx); err != nil || done {
			return MigrateSummary{NothingToDo: why}, err
		}
	}
	if phase == phaseDone {
		return MigrateSummary{NothingToDo: fmt.Sprintf("stream %s was migrated to layout %s already; its old events are kept in %s (delete it with `nats stream rm %s`)",
			StreamName, Layout, BackupStreamName, BackupStreamName), Backup: BackupStreamName}, nil
	}
	if phase == "" || phase == phaseCopying {
		if backup, err = m.copy(ctx); err != nil {
			return MigrateSummary{}, err
		}
	}
	if err := m.replaceStream(ctx, backup); err != nil {
		return MigrateSummary{}, err
	}
	sum, floors, err := m.republish(ctx, backup)
	if err != nil {
		return MigrateSummary{}, err
	}
	if sum.Consumers, err = m.recreateConsumers(ctx, backup, floors); err != nil {
		return MigrateSummary{}, err
	}
	if _, err := m.js.UpdateStream(ctx, m.opts.streamConfig()); err != nil {
		return MigrateSummary{}, fmt.Errorf("finish stream %s: %w", StreamName, err)
	}
	if err := m.setPhase(ctx, backup, phaseDone); err != nil {
		return MigrateSummary{}, err
	}
	sum.Backup, sum.Took = BackupStreamName, time.Since(start)
	return sum, nil
}

// nothingToDo reports whether there is no stream ORDERS, or one already in
// Layout, with no migration of it under way.
func (m *migration) nothingToDo(ctx context.Context) (bool, string, error) {
	orders, err := m.js.Stream(ctx, StreamName)
	if isStreamMissing(err) {
		return true, fmt.Sprintf("there is no stream %s: nothing to migrate", StreamName), nil
	}
	if err != nil {
		return false, "", err
	}
	meta := orders.CachedInfo().Config.Metadata
	if meta[MetadataLayout] == Layout && meta[MetadataMigration] == "" {
		return true, fmt.Sprintf("stream %s is in layout %s already: nothing to migrate", StreamName, Layout), nil
	}
	if meta[MetadataMigration] != "" {
		return false, "", fmt.Errorf("stream %s is marked as being migrated but there is no stream %s to migrate it from: "+
			"it cannot be finished; delete %s (`nats stream rm %s`) only if its events are kept elsewhere", StreamName, BackupStreamName, StreamName, StreamName)
	}
	return false, "", nil
}

// copy makes the backup mirror ORDERS, waits until it holds every
// message, records the durable consumers on it, and stops the mirroring.
func (m *migration) copy(ctx context.Context) (jetstream.Stream, error) {
	orders, err := m.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	cfg := m.backupConfig(phaseCopying)
	cfg.Mirror = &jetstream.StreamSource{Name: StreamName}
	backup, err := m.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		backup, err = m.js.Stream(ctx, BackupStreamName) // a run that died while copying
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", BackupStreamName, err)
	}
	m.log.Info("copying the stream", "from", StreamName, "to", BackupStreamName, "messages", orders.CachedInfo().State.Msgs)
	if err := waitMirrored(ctx, orders, backup); err != nil {
		return nil, err
	}
	if err := m.recordConsumers(ctx, orders, backup); err != nil {
		return nil, err
	}
	// Promoted: it stops following ORDERS, which is about to be deleted
	// (and made again, which a mirror would follow).
	if _, err := m.js.UpdateStream(ctx, m.backupConfig(phaseCopied)); err != nil {
		return nil, fmt.Errorf("stop mirroring into %s: %w", BackupStreamName, err)
	}
	return m.js.Stream(ctx, BackupStreamName)
}

// backupConfig is the backup stream, at a phase. It takes no subjects of
// its own but its name, which no one publishes on.
func (m *migration) backupConfig(phase string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        BackupStreamName,
		Description: "ordersd: the events of stream ORDERS in subject layout 1, kept by `ordersd migrate`",
		Metadata:    map[string]string{MetadataLayout: "1", MetadataMigration: phase},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    m.opts.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// waitMirrored waits until the mirror holds the last message of ORDERS.
func waitMirrored(ctx context.Context, orders, backup jetstream.Stream) error {
	for {
		src, err := orders.Info(ctx)
		if err != nil {
			return err
		}
		dst, err := backup.Info(ctx)
		if err != nil {
			return err
		}
		if dst.State.LastSeq == src.State.LastSeq && dst.State.Msgs == src.State.Msgs {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("copy of %s into %s: %d of %d messages: %w", StreamName, BackupStreamName, dst.State.Msgs, src.State.Msgs, ctx.Err())
		case <-time.After(copyPoll):
		}
	}
}

// setPhase records how far the migration went on the backup.
func (m *migration) setPhase(ctx context.Context, backup jetstream.Stream, phase string) error {
	cfg := backup.CachedInfo().Config
	cfg.Metadata = map[string]string{MetadataLayout: "1", MetadataMigration: phase}
	_, err := m.js.UpdateStream(ctx, cfg)
	return err
}

// replaceStream deletes the stream ORDERS in the old layout, once the
// backup is known to hold all of it, and creates it in the new one,
// marked as under way. A stream ORDERS in the new layout is kept: a run
// that died while filling it, or just before marking the backup done.
func (m *migration) replaceStream(ctx context.Context, backup jetstream.Stream) error {
	orders, err := m.js.Stream(ctx, StreamName)
	switch {
	case isStreamMissing(err):
	case err != nil:
		return err
	case orders.CachedInfo().Config.Metadata[MetadataMigration] != "", orders.CachedInfo().Config.Metadata[MetadataLayout] == Layout:
		return m.provisionIndex(ctx) // made (and perhaps finished) by an earlier run
	default:
		have, kept := orders.CachedInfo().State, backup.CachedInfo().State
		if have.LastSeq != kept.LastSeq || have.Msgs != kept.Msgs {
			return fmt.Errorf("stream %s changed after it was copied into %s (last sequence %d, copied %d): "+
				"is an ordersd node running? Stop every node, delete %s (`nats stream rm %s`) and run `ordersd migrate` again",
				StreamName, BackupStreamName, have.LastSeq, kept.LastSeq, BackupStreamName, BackupStreamName)
		}
		if err := m.js.DeleteStream(ctx, StreamName); err != nil {
			return fmt.Errorf("delete stream %s (its events are kept in %s; run `ordersd migrate` again): %w", StreamName, BackupStreamName, err)
		}
		m.log.Info("deleted the stream in the old layout", "stream", StreamName, "kept_in", BackupStreamName)
	}
	cfg := m.opts.streamConfig()
	cfg.Metadata[MetadataMigration] = migrationUnderWay
	if _, err := m.js.CreateStream(ctx, cfg); err != nil {
		return fmt.Errorf("create stream %s in layout %s (its events are kept in %s; run `ordersd migrate` again): %w", StreamName, Layout, BackupStreamName, err)
	}
	return m.provisionIndex(ctx)
}

// provisionIndex creates the order-id index, or updates it.
func (m *migration) provisionIndex(ctx context.Context) error {
	if _, err := m.js.CreateOrUpdateStream(ctx, m.opts.indexStreamConfig()); err != nil {
		return fmt.Errorf("provision stream %s: %w", IndexStreamName, err)
	}
	return nil
}

// republish publishes every event of the backup on its new subject, in
// order, from where an earlier run stopped. It returns the summary of the
// events and, for each old ack floor of a recorded consumer, the new
// sequence it maps to.
func (m *migration) republish(ctx context.Context, backup jetstream.Stream) (MigrateSummary, map[uint64]uint64, error) {
	orders, err := m.js.Stream(ctx, StreamName)
	if err != nil {
		return MigrateSummary{}, nil, err
	}
	floors, err := recordedFloors(ctx, backup)
	if err != nil {
		return MigrateSummary{}, nil, err
	}
	r := republisher{m: m, orders: orders, done: orders.CachedInfo().State.LastSeq, floors: floors,
		newSeq: map[uint64]uint64{}, customers: map[string]string{}}
	last := backup.CachedInfo().State.LastSeq
	m.log.Info("publishing the events in the new layout", "events", backup.CachedInfo().State.Msgs, "already_published", r.done)
	if last > 0 {
		cons, err := backup.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return MigrateSummary{}, nil, err
		}
		it, err := cons.Messages()
		if err != nil {
			return MigrateSummary{}, nil, err
		}
		defer it.Stop()
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return MigrateSummary{}, nil, fmt.Errorf("read %s: %w", BackupStreamName, err)
			}
			meta, err := msg.Metadata()
			if err != nil {
				return MigrateSummary{}, nil, err
			}
			if err := r.event(ctx, meta.Sequence.Stream, msg.Subject(), msg.Headers(), msg.Data()); err != nil {
				return MigrateSummary{}, nil, err
			}
			if meta.Sequence.Stream >= last {
				break
			}
		}
	}
	if err := r.flush(ctx); err != nil {
		return MigrateSummary{}, nil, err
	}
	for _, floor := range r.floors[r.nextFloor:] {
		r.newSeq[floor] = r.pos
	}
	info, err := orders.Info(ctx)
	if err != nil {
		return MigrateSummary{}, nil, err
	}
	if info.State.LastSeq != r.pos || info.State.Msgs != r.pos {
		return MigrateSummary{}, nil, fmt.Errorf("stream %s holds %d events up to sequence %d after the migration, want %d: run `ordersd migrate` again",
			StreamName, info.State.Msgs, info.State.LastSeq, r.pos)
	}
	m.customers = r.customers
	return MigrateSummary{Events: int(r.pos), Orders: r.indexed, Skipped: r.skipped,
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
	key    OrderKey // of an index entry; zero for an event
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
	key := KeyOf(order)
	if _, seen := r.customers[key.OrderID]; !seen {
		r.customers[key.OrderID] = key.CustomerID
		r.indexed++
		entry, expectNew := IndexEntry(key)
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
	if msg.Subject, err = EventSubject(order.GetStatus(), key); err != nil {
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
	return r.submit(ctx, msg, OrderKey{}, jetstream.WithExpectStream(StreamName), jetstream.WithExpectLastSequence(r.pos-1))
}

// checkPublished compares the last event an earlier run published with
// the backup's event it should be.
func (r *republisher) checkPublished(ctx context.Context, data []byte) error {
	stored, err := r.orders.GetMsg(ctx, r.pos)
	if err != nil {
		return fmt.Errorf("read %s sequence %d: %w", StreamName, r.pos, err)
	}
	if !bytes.Equal(stored.Data, data) {
		return fmt.Errorf("stream %s sequence %d is not the event an earlier migration published there: "+
			"delete %s (`nats stream rm %s`; its events are kept in %s) and run `ordersd migrate` again", StreamName, r.pos, StreamName, StreamName, BackupStreamName)
	}
	return nil
}

// submit publishes msg without waiting, keeping at most republishWindow
// publishes in flight: when full, it waits for the oldest.
func (r *republisher) submit(ctx context.Context, msg *nats.Msg, key OrderKey, opts ...jetstream.PublishOpt) error {
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
	if err != nil && p.key != (OrderKey{}) && isWrongLastSequence(err) {
		err = r.checkIndexed(ctx, p.key)
	}
	if err != nil {
		return fmt.Errorf("publish on %s (run `ordersd migrate` again to go on): %w", p.future.Msg().Subject, err)
	}
	return nil
}

// checkIndexed accepts an index entry that is there already when it names
// the order's customer.
func (r *republisher) checkIndexed(ctx context.Context, k OrderKey) error {
	index, err := r.m.js.Stream(ctx, IndexStreamName)
	if err != nil {
		return err
	}
	raw, err := index.GetLastMsgForSubject(ctx, IndexSubject(k.OrderID))
	if err != nil {
		return err
	}
	if customer := string(raw.Data); customer != k.CustomerID {
		return fmt.Errorf("%w: the order-id index gives order %s to customer %q, its events to %q", ErrAlreadyExists, k.OrderID, customer, k.CustomerID)
	}
	return nil
}

// decodeLayout1 reads an event stored in layout 1 (ORDERS.<event>.<order_id>),
// checking that its subject and payload agree.
func decodeLayout1(subject string, data []byte) (*ordersv1.Order, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != StreamName {
		return nil, fmt.Errorf("%w: subject %q is not %s.<event>.<order_id>", ErrCorruptEvent, subject, StreamName)
	}
	order := &ordersv1.Order{}
	if err := proto.Unmarshal(data, order); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptEvent, err)
	}
	status, ok := statusOf(parts[1])
	if !ok || order.GetStatus() != status || order.GetOrderId() != parts[2] || KeyOf(order).check() != nil {
		return nil, fmt.Errorf("%w: payload (%s, %s, %v) does not match subject %q", ErrCorruptEvent,
			order.GetCustomerId(), order.GetOrderId(), order.GetStatus(), subject)
	}
	return order, nil
}

// statusOf is the status whose events have the <event> subject token.
func statusOf(token string) (ordersv1.OrderStatus, bool) {
	for status, t := range eventTokens {
		if t == token {
			return status, true
		}
	}
	return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, false
}
