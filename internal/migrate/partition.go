package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// RunPartitions rewrites a deployment of layout 2 (the stream ORDERS, its
// claims in ORDER_IDS) into layout 3 with n partitions, for `ordersd
// migrate --partitions N`, so that nothing is lost if it dies at any point
// and running it again finishes the job:
//
//  1. ORDERS is marked as being partitioned (MetadataMigration, with n
//     and its last sequence): every node refuses it from then on;
//  2. the partitions are created, each marked as being filled, which
//     every node refuses too;
//  3. every event of ORDERS is published again, in stream order, into its
//     order's partition on its new subject, after the claim of its order
//     id for an order's first event, each with the checks a create or a
//     transition makes (the claim expects none, the event the order's
//     last revision) and expecting the partition's last sequence, so a
//     partition's contents are a function of ORDERS: a run again skips
//     what an earlier one published. Claims of ORDER_IDS with no event
//     (a create that died in between) follow;
//  4. each durable consumer of ORDERS is created on every partition
//     under the same name, with its filters in the partition, just after
//     the new sequence of the last event at or before its old ack floor
//     there;
//  5. the partitions' markers are removed; ORDER_IDS and then ORDERS are
//     marked eventstore.MigratedToPartitions: they stay as the backup
//     (with their consumers), which nodes of layout 3 accept and nodes of
//     layout 2 refuse, naming --partitions n.
//
// Every node must be stopped while it runs: a write to ORDERS after step
// 1 makes the migration fail rather than lose it. Partitions of another
// number, and going back to layout 2, are refused.
func RunPartitions(ctx context.Context, js jetstream.JetStream, opts eventstore.StreamOptions, n int, log *slog.Logger) (Summary, error) {
	layout := eventstore.Layout{Partitions: n}
	if n == 0 {
		return Summary{}, fmt.Errorf("%w: --partitions must be 1 to %d", eventstore.ErrInvalidOption, eventstore.MaxPartitions)
	}
	if err := layout.Check(); err != nil {
		return Summary{}, err
	}
	m := partitioning{js: js, opts: opts.WithDefaults(), layout: layout, log: log}
	return m.run(ctx)
}

// Metadata of ORDERS while it is being partitioned: MetadataPartitions
// holds n and metadataLastSeq its last sequence when it was marked (so a
// write since is noticed).
const metadataLastSeq = "ordersd_migrate_last_seq"

// partitioning is the state of one RunPartitions.
type partitioning struct {
	js     jetstream.JetStream
	opts   eventstore.StreamOptions
	layout eventstore.Layout
	log    *slog.Logger
}

// n is the number of partitions, as the metadata records it.
func (m *partitioning) n() string { return strconv.Itoa(m.layout.Partitions) }

// underWay is the marker of ORDERS while it is being partitioned.
func (m *partitioning) underWay() string {
	return fmt.Sprintf("under way: partitioning into %s streams; run `ordersd migrate --partitions %s` to finish it", m.n(), m.n())
}

// filling is the marker of a partition until the migration ends.
func (m *partitioning) filling() string {
	return fmt.Sprintf("being filled from %s: run `ordersd migrate --partitions %s` to finish it", eventstore.StreamName, m.n())
}

// run goes through the steps of RunPartitions, from where the metadata
// of ORDERS says an earlier run stopped.
func (m *partitioning) run(ctx context.Context) (Summary, error) {
	start := time.Now()
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return m.noOrdersStream(ctx)
	}
	if err != nil {
		return Summary{}, err
	}
	meta := orders.CachedInfo().Config.Metadata
	switch have, isOurs := meta[eventstore.MetadataPartitions]; {
	case meta[eventstore.MetadataMigration] == eventstore.MigratedToPartitions && have == m.n():
		return Summary{NothingToDo: fmt.Sprintf("the orders were migrated to %s partitions already; streams %s and %s are kept as their backup (see docs/subject-layout.md, \"Migrating to partitions\")",
			have, eventstore.StreamName, eventstore.IndexStreamName), Backup: eventstore.StreamName}, nil
	case meta[eventstore.MetadataMigration] == eventstore.MigratedToPartitions:
		return Summary{}, fmt.Errorf("the orders were migrated to %s partitions already: migrating them to another number of partitions is not supported; start the nodes with --partitions %s", have, have)
	case isOurs && have != m.n():
		return Summary{}, fmt.Errorf("a migration to %s partitions is under way: finish it with `ordersd migrate --partitions %s`", have, have)
	case isOurs:
		m.log.Info("going on with a migration to partitions", "partitions", have)
	case meta[eventstore.MetadataMigration] != "":
		return Summary{}, fmt.Errorf("stream %s is being migrated to layout %s (%s): finish that first with `ordersd migrate`, then run `ordersd migrate --partitions %s`",
			eventstore.StreamName, eventstore.UnpartitionedLayout, meta[eventstore.MetadataMigration], m.n())
	case meta[eventstore.MetadataLayout] != eventstore.UnpartitionedLayout:
		return Summary{}, fmt.Errorf("stream %s is in subject layout 1: run `ordersd migrate` (without --partitions) first, then `ordersd migrate --partitions %s`", eventstore.StreamName, m.n())
	default:
		if err := m.checkNoPartitions(ctx); err != nil {
			return Summary{}, err
		}
		if orders, err = m.markOrders(ctx, orders); err != nil {
			return Summary{}, err
		}
	}
	if err := m.createPartitions(ctx); err != nil {
		return Summary{}, err
	}
	recs, err := m.durables(ctx, orders)
	if err != nil {
		return Summary{}, err
	}
	sum, floors, err := m.republish(ctx, orders, floorsOf(recs))
	if err != nil {
		return Summary{}, err
	}
	if sum.Consumers, err = m.recreateConsumers(ctx, recs, floors); err != nil {
		return Summary{}, err
	}
	if err := m.finish(ctx); err != nil {
		return Summary{}, err
	}
	sum.Backup, sum.Took = eventstore.StreamName, time.Since(start)
	return sum, nil
}

// noOrdersStream is the answer when there is no stream ORDERS.
func (m *partitioning) noOrdersStream(ctx context.Context) (Summary, error) {
	first, err := m.js.Stream(ctx, m.layout.All()[0].Stream())
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return Summary{NothingToDo: fmt.Sprintf("there is no stream %s: nothing to migrate (a new deployment started with --partitions %s makes its partitions itself)",
			eventstore.StreamName, m.n())}, nil
	case err != nil:
		return Summary{}, err
	}
	if have := first.CachedInfo().Config.Metadata[eventstore.MetadataPartitions]; have != m.n() {
		return Summary{}, fmt.Errorf("the orders are in %s partitions (stream %s): migrating them to another number of partitions is not supported", have, first.CachedInfo().Config.Name)
	}
	return Summary{NothingToDo: fmt.Sprintf("the orders are in %s partitions already: nothing to migrate", m.n())}, nil
}

// checkNoPartitions refuses to start when a stream of a partition exists
// already: this migration did not make it (ORDERS is not marked).
func (m *partitioning) checkNoPartitions(ctx context.Context) error {
	for _, p := range m.layout.All() {
		_, err := m.js.Stream(ctx, p.Stream())
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			continue
		case err != nil:
			return err
		}
		return fmt.Errorf("stream %s exists, and `ordersd migrate --partitions` did not make it: the orders of %s cannot be moved into it; delete it (`nats stream rm %s`) if it holds nothing you need, and run the migration again",
			p.Stream(), eventstore.StreamName, p.Stream())
	}
	return nil
}

// markOrders marks ORDERS as being partitioned, recording n and its last
// sequence.
func (m *partitioning) markOrders(ctx context.Context, orders jetstream.Stream) (jetstream.Stream, error) {
	last := strconv.FormatUint(orders.CachedInfo().State.LastSeq, 10)
	if err := m.setMetadata(ctx, eventstore.StreamName, map[string]string{
		eventstore.MetadataMigration: m.underWay(), eventstore.MetadataPartitions: m.n(), metadataLastSeq: last}); err != nil {
		return nil, err
	}
	m.log.Info("marked the stream as being partitioned: nodes refuse it from now on", "stream", eventstore.StreamName, "partitions", m.n(), "last_sequence", last)
	return m.js.Stream(ctx, eventstore.StreamName)
}

// setMetadata sets (or, for an empty value, removes) metadata keys of the
// stream name, keeping the rest of its config.
func (m *partitioning) setMetadata(ctx context.Context, name string, set map[string]string) error {
	stream, err := m.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := stream.CachedInfo().Config
	meta := maps.Clone(cfg.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	maps.DeleteFunc(meta, func(k, _ string) bool { return strings.HasPrefix(k, "_nats.") }) // the server's own
	for k, v := range set {
		if v == "" {
			delete(meta, k)
		} else {
			meta[k] = v
		}
	}
	cfg.Metadata = meta
	if _, err := m.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update the metadata of stream %s (run `ordersd migrate --partitions %s` again): %w", name, m.n(), err)
	}
	return nil
}

// createPartitions creates the stream of every partition, marked as
// being filled; one an earlier run made is kept when it is of this
// migration.
func (m *partitioning) createPartitions(ctx context.Context) error {
	for _, p := range m.layout.All() {
		cfg := m.opts.PartitionConfig(p)
		cfg.Metadata[eventstore.MetadataMigration] = m.filling()
		stream, err := m.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = m.js.Stream(ctx, p.Stream())
			if err == nil && stream.CachedInfo().Config.Metadata[eventstore.MetadataPartitions] != m.n() {
				return fmt.Errorf("stream %s exists and is not a partition of %s: delete it (`nats stream rm %s`) and run `ordersd migrate --partitions %s` again",
					p.Stream(), m.n(), p.Stream(), m.n())
			}
		}
		if err != nil {
			return fmt.Errorf("create stream %s (run `ordersd migrate --partitions %s` again): %w", p.Stream(), m.n(), err)
		}
	}
	return nil
}

// finish removes the partitions' markers, then marks ORDER_IDS and last
// ORDERS (whose marker says how far the migration went) as the backup.
func (m *partitioning) finish(ctx context.Context) error {
	for _, p := range m.layout.All() {
		if _, err := m.js.UpdateStream(ctx, m.opts.PartitionConfig(p)); err != nil {
			return fmt.Errorf("finish stream %s (run `ordersd migrate --partitions %s` again): %w", p.Stream(), m.n(), err)
		}
	}
	done := map[string]string{eventstore.MetadataMigration: eventstore.MigratedToPartitions, eventstore.MetadataPartitions: m.n()}
	if err := m.setMetadata(ctx, eventstore.IndexStreamName, done); err != nil {
		return err
	}
	done[metadataLastSeq] = ""
	return m.setMetadata(ctx, eventstore.StreamName, done)
}
