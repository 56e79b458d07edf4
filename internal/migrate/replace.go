package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// migrationUnderWay marks ORDERS while a migration fills it (nodes refuse it).
const migrationUnderWay = "under way: run `ordersd migrate` to finish it"

// replaceStream deletes the stream ORDERS in the old layout, once the
// backup is known to hold all of it, and creates it in the new one,
// marked as under way. A stream ORDERS in the new layout is kept: a run
// that died while filling it, or just before marking the backup done.
func (m *migration) replaceStream(ctx context.Context, backup jetstream.Stream) error {
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return err
	case orders.CachedInfo().Config.Metadata[eventstore.MetadataMigration] != "", orders.CachedInfo().Config.Metadata[eventstore.MetadataLayout] == eventstore.UnpartitionedLayout:
		return m.provisionIndex(ctx) // made (and perhaps finished) by an earlier run
	default:
		have, kept := orders.CachedInfo().State, backup.CachedInfo().State
		if have.LastSeq != kept.LastSeq || have.Msgs != kept.Msgs {
			return fmt.Errorf("stream %s changed after it was copied into %s (last sequence %d, copied %d): "+
				"is an ordersd node running? Stop every node, delete %s (`nats stream rm %s`) and run `ordersd migrate` again",
				eventstore.StreamName, BackupStreamName, have.LastSeq, kept.LastSeq, BackupStreamName, BackupStreamName)
		}
		if err := m.js.DeleteStream(ctx, eventstore.StreamName); err != nil {
			return fmt.Errorf("delete stream %s (its events are kept in %s; run `ordersd migrate` again): %w", eventstore.StreamName, BackupStreamName, err)
		}
		m.log.Info("deleted the stream in the old layout", "stream", eventstore.StreamName, "kept_in", BackupStreamName)
	}
	cfg := m.opts.StreamConfig()
	cfg.Metadata[eventstore.MetadataMigration] = migrationUnderWay
	if _, err := m.js.CreateStream(ctx, cfg); err != nil {
		return fmt.Errorf("create stream %s in layout %s (its events are kept in %s; run `ordersd migrate` again): %w", eventstore.StreamName, eventstore.UnpartitionedLayout, BackupStreamName, err)
	}
	return m.provisionIndex(ctx)
}

// provisionIndex creates the order-id index, or updates it.
func (m *migration) provisionIndex(ctx context.Context) error {
	if _, err := m.js.CreateOrUpdateStream(ctx, m.opts.IndexStreamConfig()); err != nil {
		return fmt.Errorf("provision stream %s: %w", eventstore.IndexStreamName, err)
	}
	return nil
}
