package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// Run rewrites a stream ORDERS in subject layout 1
// (ORDERS.<event>.<order_id>) into this build's eventstore.UnpartitionedLayout, so that
// nothing is lost if it dies at any point and running it again finishes
// the job:
//
//  1. copy: the stream BackupStreamName mirrors ORDERS until it holds
//     every message, with the same sequences; each durable consumer of
//     ORDERS is recorded on it (config and ack floor, see
//     consumers.go);
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
// (eventstore.MetadataMigration); a run with no backup and ORDERS already
// in the Layout does nothing. Every node must be stopped while it runs: a
// node that writes to ORDERS during the copy makes the migration fail
// rather than lose the write.
func Run(ctx context.Context, js jetstream.JetStream, opts eventstore.StreamOptions, log *slog.Logger) (Summary, error) {
	m := migration{js: js, opts: opts.WithDefaults(), log: log}
	return m.run(ctx)
}

// BackupStreamName is the stream that keeps the layout 1 events after a
// migration (and during it, the copy it starts from). Delete it once the
// migrated stream has been checked: `nats stream rm ORDERS_LAYOUT1`.
const BackupStreamName = eventstore.StreamName + "_LAYOUT1"

// Migration phases, recorded on the backup.
const (
	phaseCopying = "copying" // mirroring ORDERS; ORDERS untouched
	phaseCopied  = "copied"  // the backup holds every event; ORDERS may be gone
	phaseDone    = "done"    // ORDERS is in Layout, consumers recreated
)

// Summary says what a migration did.
type Summary struct {
	// NothingToDo explains why nothing was done (ORDERS already in Layout,
	// or no stream ORDERS); empty when the migration ran.
	NothingToDo string
	// Events is the number of events published in the new layout; Orders
	// the number of orders (index entries); Skipped the messages of the old
	// stream that are not order events (kept in the backup only).
	Events, Orders, Skipped int
	// Consumers names the durable consumers created again, each with its
	// new start sequence.
	Consumers []Consumer
	// OldLastSeq and NewLastSeq are the last stream sequences before and
	// after: every revision changes.
	OldLastSeq, NewLastSeq uint64
	// Partitions is N for a migration to partitions (RunPartitions), whose
	// PartitionLastSeqs are each partition's last sequence after it and
	// Reserved the order ids claimed with no event (carried over).
	Partitions        int
	PartitionLastSeqs []uint64
	Reserved          int
	// Backup is the stream that keeps the old events.
	Backup string
	// Took is how long the run took.
	Took time.Duration
}

// migration is the state of one Run.
type migration struct {
	js        jetstream.JetStream
	opts      eventstore.StreamOptions
	log       *slog.Logger
	customers map[string]string // order id → customer id, once republished
}

// run goes through the steps of Run, from the one the backup's phase
// says comes next.
func (m *migration) run(ctx context.Context) (Summary, error) {
	start := time.Now()
	backup, err := m.js.Stream(ctx, BackupStreamName)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return Summary{}, err
	}
	phase := ""
	if backup != nil {
		if phase = backup.CachedInfo().Config.Metadata[eventstore.MetadataMigration]; phase == "" {
			return Summary{}, fmt.Errorf("a stream %s exists that `ordersd migrate` did not make: rename or delete it first", BackupStreamName)
		}
	}
	if phase == "" {
		if done, why, err := m.nothingToDo(ctx); err != nil || done {
			return Summary{NothingToDo: why}, err
		}
	}
	if phase == phaseDone {
		return Summary{NothingToDo: fmt.Sprintf("stream %s was migrated to layout %s already; its old events are kept in %s (delete it with `nats stream rm %s`)",
			eventstore.StreamName, eventstore.UnpartitionedLayout, BackupStreamName, BackupStreamName), Backup: BackupStreamName}, nil
	}
	if phase == "" || phase == phaseCopying {
		if backup, err = m.copy(ctx); err != nil {
			return Summary{}, err
		}
	}
	if err := m.replaceStream(ctx, backup); err != nil {
		return Summary{}, err
	}
	sum, floors, err := m.republish(ctx, backup)
	if err != nil {
		return Summary{}, err
	}
	if sum.Consumers, err = m.recreateConsumers(ctx, backup, floors); err != nil {
		return Summary{}, err
	}
	if _, err := m.js.UpdateStream(ctx, m.opts.StreamConfig()); err != nil {
		return Summary{}, fmt.Errorf("finish stream %s: %w", eventstore.StreamName, err)
	}
	if err := m.setPhase(ctx, backup, phaseDone); err != nil {
		return Summary{}, err
	}
	sum.Backup, sum.Took = BackupStreamName, time.Since(start)
	return sum, nil
}

// nothingToDo reports whether there is no stream ORDERS, or one already in
// Layout, with no migration of it under way.
func (m *migration) nothingToDo(ctx context.Context) (bool, string, error) {
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := refuseUnpartitioning(ctx, m.js); err != nil {
			return false, "", err
		}
		return true, fmt.Sprintf("there is no stream %s: nothing to migrate", eventstore.StreamName), nil
	}
	if err != nil {
		return false, "", err
	}
	meta := orders.CachedInfo().Config.Metadata
	if n := meta[eventstore.MetadataPartitions]; n != "" {
		if meta[eventstore.MetadataMigration] == eventstore.MigratedToPartitions {
			return false, "", fmt.Errorf("the orders were migrated to %s partitions (stream %s is their backup): `ordersd migrate` does not take them back to one stream", n, eventstore.StreamName)
		}
		return false, "", fmt.Errorf("a migration to %s partitions is under way: finish it with `ordersd migrate --partitions %s`", n, n)
	}
	if meta[eventstore.MetadataLayout] == eventstore.UnpartitionedLayout && meta[eventstore.MetadataMigration] == "" {
		return true, fmt.Sprintf("stream %s is in layout %s already: nothing to migrate", eventstore.StreamName, eventstore.UnpartitionedLayout), nil
	}
	if meta[eventstore.MetadataMigration] != "" {
		return false, "", fmt.Errorf("stream %s is marked as being migrated but there is no stream %s to migrate it from: "+
			"it cannot be finished; delete %s (`nats stream rm %s`) only if its events are kept elsewhere", eventstore.StreamName, BackupStreamName, eventstore.StreamName, eventstore.StreamName)
	}
	return false, "", nil
}

// setPhase records how far the migration went on the backup.
func (m *migration) setPhase(ctx context.Context, backup jetstream.Stream, phase string) error {
	cfg := backup.CachedInfo().Config
	cfg.Metadata = map[string]string{eventstore.MetadataLayout: "1", eventstore.MetadataMigration: phase}
	_, err := m.js.UpdateStream(ctx, cfg)
	return err
}

// refuseUnpartitioning fails when the orders are partitioned (layout 3):
// going back to one stream is not supported.
func refuseUnpartitioning(ctx context.Context, js jetstream.JetStream) error {
	first, err := js.Stream(ctx, eventstore.Partition{Of: 1}.Stream())
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("the orders are in %s partitions (stream %s): `ordersd migrate` does not take them back to one stream",
		first.CachedInfo().Config.Metadata[eventstore.MetadataPartitions], first.CachedInfo().Config.Name)
}
