package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// The durable consumers of a migrated stream. They are deleted with the
// stream ORDERS, so a migration records each one before (its config and
// its ack floor, as the metadata of a consumer of the same name on the
// backup, which never delivers anything) and creates it again after, with
// its filters in the new layout, then resets it (JetStream's consumer
// reset) to start just after the new sequence of the last event at or
// before its old ack floor: the events it had not acknowledged are
// delivered again (at least once holds). Its deliver policy is kept, so
// whoever made it with "deliver all" (the review worker, work queues)
// still finds it as made; one that started at the newest or last events,
// which a reset cannot move, starts by sequence instead. Ephemeral
// consumers (reads, watches) end with the stream; their clients start
// over.

// Metadata keys of a recorded consumer on the backup.
const (
	metadataConsumerConfig   = "ordersd_migrate_config"
	metadataConsumerAckFloor = "ordersd_migrate_ack_floor"
)

// Consumer is a durable consumer created again by a migration.
type Consumer struct {
	Name string
	// Filters are its subject filters in the new layout.
	Filters []string
	// OldAckFloor is the stream sequence up to which it had acknowledged
	// every event; StartSequence the new sequence it starts from.
	OldAckFloor, StartSequence uint64
	// PartitionStarts are, after a migration to partitions, the sequence
	// it starts from in each partition (StartSequence is unused).
	PartitionStarts []uint64
}

// recordConsumers records every durable consumer of orders on the backup.
func (m *migration) recordConsumers(ctx context.Context, orders, backup jetstream.Stream) error {
	list := orders.ListConsumers(ctx)
	var infos []*jetstream.ConsumerInfo
	for info := range list.Info() {
		if info.Config.Durable != "" {
			infos = append(infos, info)
		}
	}
	if err := list.Err(); err != nil {
		return fmt.Errorf("list the consumers of %s: %w", eventstore.StreamName, err)
	}
	for _, info := range infos {
		config, err := json.Marshal(info.Config)
		if err != nil {
			return err
		}
		if _, err := backup.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       info.Config.Durable,
			Description:   "ordersd migrate: a durable consumer of " + eventstore.StreamName + ", created again there in layout " + eventstore.UnpartitionedLayout,
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			Metadata: map[string]string{
				metadataConsumerConfig:   string(config),
				metadataConsumerAckFloor: strconv.FormatUint(info.AckFloor.Stream, 10),
			},
		}); err != nil {
			return fmt.Errorf("record consumer %s on %s: %w", info.Config.Durable, BackupStreamName, err)
		}
		m.log.Info("recorded a durable consumer", "consumer", info.Config.Durable, "ack_floor", info.AckFloor.Stream)
	}
	return nil
}

// recordedConsumer is a consumer recorded on the backup.
type recordedConsumer struct {
	config   jetstream.ConsumerConfig
	ackFloor uint64
}

// recorded returns the consumers recorded on the backup.
func recorded(ctx context.Context, backup jetstream.Stream) ([]recordedConsumer, error) {
	list := backup.ListConsumers(ctx)
	var out []recordedConsumer
	var bad error
	for info := range list.Info() {
		raw, ok := info.Config.Metadata[metadataConsumerConfig]
		if !ok {
			continue
		}
		var rec recordedConsumer
		err := json.Unmarshal([]byte(raw), &rec.config)
		if err == nil {
			rec.ackFloor, err = strconv.ParseUint(info.Config.Metadata[metadataConsumerAckFloor], 10, 64)
		}
		if err != nil {
			bad = fmt.Errorf("consumer %s recorded on %s: %w", info.Config.Durable, BackupStreamName, err)
		}
		out = append(out, rec)
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list the consumers of %s: %w", BackupStreamName, err)
	}
	return out, bad
}

// recordedFloors returns the old stream sequences whose new sequences the
// recorded consumers need, in ascending order: their ack floors and, for
// those that start at a sequence, the sequence before it.
func recordedFloors(ctx context.Context, backup jetstream.Stream) ([]uint64, error) {
	recs, err := recorded(ctx, backup)
	if err != nil {
		return nil, err
	}
	var floors []uint64
	for _, rec := range recs {
		floors = append(floors, rec.ackFloor)
		if rec.config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && rec.config.OptStartSeq > 0 {
			floors = append(floors, rec.config.OptStartSeq-1)
		}
	}
	slices.Sort(floors)
	return slices.Compact(floors), nil
}

// recreateConsumers creates each recorded consumer on ORDERS again, then
// removes its record. newSeq maps old ack floors to new sequences.
func (m *migration) recreateConsumers(ctx context.Context, backup jetstream.Stream, newSeq map[uint64]uint64) ([]Consumer, error) {
	recs, err := recorded(ctx, backup)
	if err != nil {
		return nil, err
	}
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return nil, err
	}
	var out []Consumer
	for _, rec := range recs {
		cfg, err := m.translateConsumer(rec.config)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", rec.config.Durable, err)
		}
		start := newSeq[rec.ackFloor] + 1
		switch cfg.DeliverPolicy {
		case jetstream.DeliverAllPolicy, jetstream.DeliverByStartTimePolicy:
			// Every event was stored again at the migration: the start
			// time comes before all of them, and the reset decides.
		case jetstream.DeliverByStartSequencePolicy:
			cfg.OptStartSeq = newSeq[cfg.OptStartSeq-1] + 1
		default:
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
		}
		if _, err := orders.CreateConsumer(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			return nil, fmt.Errorf("create consumer %s again (its old config is kept on %s; run `ordersd migrate` again): %w", cfg.Durable, BackupStreamName, err)
		}
		if _, err := m.js.ResetConsumerToSequence(ctx, eventstore.StreamName, cfg.Durable, start); err != nil {
			return nil, fmt.Errorf("start consumer %s at sequence %d (run `ordersd migrate` again): %w", cfg.Durable, start, err)
		}
		if err := backup.DeleteConsumer(ctx, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		filters := cfg.FilterSubjects
		if cfg.FilterSubject != "" {
			filters = []string{cfg.FilterSubject}
		}
		out = append(out, Consumer{Name: cfg.Durable, Filters: filters, OldAckFloor: rec.ackFloor, StartSequence: start})
		m.log.Info("created a durable consumer again", "consumer", cfg.Durable, "filters", filters, "old_ack_floor", rec.ackFloor, "start_sequence", start)
	}
	slices.SortFunc(out, func(a, b Consumer) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// translateConsumer returns cfg with its filters in the new layout and
// without the metadata the server keeps in it.
func (m *migration) translateConsumer(cfg jetstream.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	var err error
	if cfg.FilterSubject != "" {
		if cfg.FilterSubject, err = m.translateFilter(cfg.FilterSubject); err != nil {
			return cfg, err
		}
	}
	filters := make([]string, 0, len(cfg.FilterSubjects))
	for _, f := range cfg.FilterSubjects {
		f, err := m.translateFilter(f)
		if err != nil {
			return cfg, err
		}
		filters = append(filters, f)
	}
	if len(filters) > 0 {
		cfg.FilterSubjects = filters
	}
	for k := range cfg.Metadata {
		if strings.HasPrefix(k, "_nats.") {
			delete(cfg.Metadata, k)
		}
	}
	return cfg, nil
}

// translateFilter turns a layout 1 filter ORDERS.<event|*>.<order_id|*>
// into the filter of the same events in the new layout, as FilterSubjects
// makes it: ORDERS.created.* is ORDERS.created.*.*, ORDERS.*.<id> is
// ORDERS.*.<customer_id>.<id> (a wildcard customer for an order with no
// events). Filters that end in '>' select the same events in both layouts
// and are kept.
func (m *migration) translateFilter(filter string) (string, error) {
	parts := strings.Split(filter, ".")
	if parts[len(parts)-1] == ">" {
		return filter, nil
	}
	if len(parts) != 3 || parts[0] != eventstore.StreamName {
		return "", fmt.Errorf("filter %q is not %s.<event>.<order_id> (layout 1): translate it by hand", filter, eventstore.StreamName)
	}
	var f eventstore.Filter
	if parts[1] != "*" {
		status, ok := eventstore.StatusOfEventType(parts[1])
		if !ok {
			return "", fmt.Errorf("filter %q names no event type", filter)
		}
		f.Statuses = append(f.Statuses, status)
	}
	if parts[2] != "*" {
		f.OrderID, f.CustomerID = parts[2], m.customers[parts[2]]
	}
	subjects, err := eventstore.FilterSubjects(f)
	if err != nil {
		return "", fmt.Errorf("filter %q: %w", filter, err)
	}
	if len(subjects) == 0 { // ORDERS.*.*: every event
		return eventstore.StreamName + ".*.*.*", nil
	}
	return subjects[0], nil
}
