package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// The durable consumers of a partitioned deployment: a work queue (or the
// review worker) is one durable consumer per partition under the one
// name, each filtering the queue's events within its partition
// (Partition.FilterSubjects). The consumers of ORDERS stay there, as part
// of the backup, and are what each run reads their config and ack floor
// from (no node acknowledges anything while ORDERS is marked).

// durables returns the durable consumers of ORDERS with their ack floors.
func (m *partitioning) durables(ctx context.Context, orders jetstream.Stream) ([]recordedConsumer, error) {
	list := orders.ListConsumers(ctx)
	var out []recordedConsumer
	for info := range list.Info() {
		if info.Config.Durable != "" {
			out = append(out, recordedConsumer{config: info.Config, ackFloor: info.AckFloor.Stream})
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list the consumers of %s: %w", eventstore.StreamName, err)
	}
	slices.SortFunc(out, func(a, b recordedConsumer) int { return strings.Compare(a.config.Durable, b.config.Durable) })
	return out, nil
}

// floorsOf are the old sequences whose new sequences recs need,
// ascending: their ack floors and, for those that start at a sequence,
// the sequence before it.
func floorsOf(recs []recordedConsumer) []uint64 {
	var floors []uint64
	for _, rec := range recs {
		floors = append(floors, rec.ackFloor)
		if rec.config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && rec.config.OptStartSeq > 0 {
			floors = append(floors, rec.config.OptStartSeq-1)
		}
	}
	slices.Sort(floors)
	return slices.Compact(floors)
}

// recreateConsumers creates each consumer of recs on every partition,
// starting just after the new sequence there of its old ack floor
// (newSeq). The events it had acknowledged are not delivered again; those
// it had not are (at least once holds).
func (m *partitioning) recreateConsumers(ctx context.Context, recs []recordedConsumer, newSeq map[uint64][]uint64) ([]Consumer, error) {
	var out []Consumer
	for _, rec := range recs {
		c := Consumer{Name: rec.config.Durable, OldAckFloor: rec.ackFloor}
		for _, p := range m.layout.All() {
			cfg, err := partitionConsumer(rec.config, p)
			if err != nil {
				return nil, fmt.Errorf("consumer %s: %w", rec.config.Durable, err)
			}
			start := newSeq[rec.ackFloor][p.Number] + 1
			switch cfg.DeliverPolicy {
			case jetstream.DeliverAllPolicy, jetstream.DeliverByStartTimePolicy:
				// Every event was stored again: the reset decides.
			case jetstream.DeliverByStartSequencePolicy:
				cfg.OptStartSeq = newSeq[cfg.OptStartSeq-1][p.Number] + 1
			default:
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
			}
			if _, err := m.js.CreateConsumer(ctx, p.Stream(), cfg); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
				return nil, fmt.Errorf("create consumer %s on %s (run `ordersd migrate --partitions %s` again): %w", cfg.Durable, p.Stream(), m.n(), err)
			}
			if _, err := m.js.ResetConsumerToSequence(ctx, p.Stream(), cfg.Durable, start); err != nil {
				return nil, fmt.Errorf("start consumer %s on %s at sequence %d (run `ordersd migrate --partitions %s` again): %w", cfg.Durable, p.Stream(), start, m.n(), err)
			}
			if p.Number == 0 {
				c.Filters = cfg.FilterSubjects
			}
			c.PartitionStarts = append(c.PartitionStarts, start)
		}
		out = append(out, c)
		m.log.Info("created a durable consumer on every partition", "consumer", c.Name, "old_ack_floor", c.OldAckFloor, "starts", c.PartitionStarts)
	}
	return out, nil
}

// partitionConsumer is cfg, a consumer of ORDERS, as the consumer of the
// same name on p: its filters within p, without the metadata the server
// keeps in it.
func partitionConsumer(cfg jetstream.ConsumerConfig, p eventstore.Partition) (jetstream.ConsumerConfig, error) {
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = []string{cfg.FilterSubject}
	}
	var out []string
	if len(filters) == 0 {
		filters = []string{eventstore.StreamSubjects} // every event
	}
	for _, f := range filters {
		translated, err := partitionFilter(f, p)
		if err != nil {
			return cfg, err
		}
		for _, t := range translated {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	cfg.FilterSubject, cfg.FilterSubjects = "", out
	cfg.Metadata = withoutServerMetadata(cfg.Metadata)
	return cfg, nil
}

// withoutServerMetadata is metadata without the server's own keys.
func withoutServerMetadata(meta map[string]string) map[string]string {
	if meta == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range meta {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	return out
}

// partitionFilter turns a filter of layout 2,
// ORDERS.<event|*>.<customer_id|*>.<order_id|*> or ORDERS.>, into the
// filters of the same events in p, as Partition.FilterSubjects makes
// them.
func partitionFilter(filter string, p eventstore.Partition) ([]string, error) {
	if filter == eventstore.StreamSubjects {
		return p.FilterSubjects(eventstore.Filter{})
	}
	parts := strings.Split(filter, ".")
	if len(parts) != 4 || parts[0] != eventstore.StreamName || slices.Contains(parts, ">") {
		return nil, fmt.Errorf("filter %q is not %s.<event>.<customer_id>.<order_id> (layout %s): make the consumer again by hand on each partition", filter, eventstore.StreamName, eventstore.UnpartitionedLayout)
	}
	var f eventstore.Filter
	if parts[1] != "*" {
		status, ok := eventstore.StatusOfEventType(parts[1])
		if !ok {
			return nil, fmt.Errorf("filter %q names no event type", filter)
		}
		f.Statuses = append(f.Statuses, status)
	}
	if parts[2] != "*" {
		f.CustomerID = parts[2]
	}
	if parts[3] != "*" {
		f.OrderID = parts[3]
	}
	return p.FilterSubjects(f)
}
