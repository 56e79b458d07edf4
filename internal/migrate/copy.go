package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// copyPoll is how often the copy step looks at the mirror's progress.
const copyPoll = 100 * time.Millisecond

// copy makes the backup mirror ORDERS, waits until it holds every
// message, records the durable consumers on it, and stops the mirroring.
func (m *migration) copy(ctx context.Context) (jetstream.Stream, error) {
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", eventstore.StreamName, err)
	}
	cfg := m.backupConfig(phaseCopying)
	cfg.Mirror = &jetstream.StreamSource{Name: eventstore.StreamName}
	backup, err := m.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		backup, err = m.js.Stream(ctx, BackupStreamName) // a run that died while copying
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", BackupStreamName, err)
	}
	m.log.Info("copying the stream", "from", eventstore.StreamName, "to", BackupStreamName, "messages", orders.CachedInfo().State.Msgs)
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
		Metadata:    map[string]string{eventstore.MetadataLayout: "1", eventstore.MetadataMigration: phase},
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
			return fmt.Errorf("copy of %s into %s: %d of %d messages: %w", eventstore.StreamName, BackupStreamName, dst.State.Msgs, src.State.Msgs, ctx.Err())
		case <-time.After(copyPoll):
		}
	}
}
