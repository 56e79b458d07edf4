package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Consumer is a work queue: the durable consumers of its name on the
// partitions (one in layout 2), their settings and their state, as
// JetStream reports them now.
type Consumer struct {
	Name string
	// Filters are the subjects it selects (ORDERS.<event>.…); empty: every event.
	Filters           []string
	AckWait           time.Duration
	MaxDeliveries     int // 0: no limit
	MaxAckPending     int
	Backoff           []time.Duration // the redelivery delays, if any; the first is the ack wait
	InactiveThreshold time.Duration   // 0: never deleted for inactivity
	Created           time.Time
	// NumPending events are still to deliver; NumAckPending delivered
	// wait for their ack, NumRedelivered of them delivered more than once;
	// NumWaiting fetches wait for events.
	NumPending, NumAckPending, NumRedelivered, NumWaiting uint64
	LastDelivery, LastAck                                 time.Time // zero: none yet
	// Partitions is the state of each partition's consumer, in layout 3
	// (nil in layout 2); the fields above sum them.
	Partitions []PartitionConsumer
	// Missing are the partitions without the consumer: a creation or an
	// update that failed half-way, which the next one completes.
	Missing []Partition
}

// PartitionConsumer is a queue's consumer on one partition.
type PartitionConsumer struct {
	Partition Partition
	Consumer  Consumer
}

// consumerOf is the Consumer that JetStream's info describes.
func consumerOf(info *jetstream.ConsumerInfo) Consumer {
	cfg := info.Config
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = []string{cfg.FilterSubject}
	}
	c := Consumer{
		Name:              info.Name,
		Filters:           filters,
		AckWait:           cfg.AckWait,
		MaxDeliveries:     max(cfg.MaxDeliver, 0), // JetStream's -1 is no limit
		MaxAckPending:     cfg.MaxAckPending,
		Backoff:           cfg.BackOff,
		InactiveThreshold: cfg.InactiveThreshold,
		Created:           info.Created,
		NumPending:        info.NumPending,
		NumAckPending:     uint64(max(info.NumAckPending, 0)),
		NumRedelivered:    uint64(max(info.NumRedelivered, 0)),
		NumWaiting:        uint64(max(info.NumWaiting, 0)),
	}
	if info.Delivered.Last != nil {
		c.LastDelivery = *info.Delivered.Last
	}
	if info.AckFloor.Last != nil {
		c.LastAck = *info.AckFloor.Last
	}
	return c
}

// ConsumerChange changes the settings of a durable consumer; a nil field
// leaves its setting as it is.
type ConsumerChange struct {
	AckWait       *time.Duration
	MaxDeliveries *int // 0: no limit
	// Backoff replaces the redelivery delays (empty: none); the first
	// becomes the ack wait, as JetStream makes it.
	Backoff           *[]time.Duration
	InactiveThreshold *time.Duration // 0: never deleted for inactivity
}

// apply makes the change to cfg, in JetStream's terms.
func (ch ConsumerChange) apply(cfg *jetstream.ConsumerConfig) {
	if ch.AckWait != nil {
		cfg.AckWait = *ch.AckWait
	}
	if ch.MaxDeliveries != nil {
		cfg.MaxDeliver = *ch.MaxDeliveries
		if cfg.MaxDeliver == 0 {
			cfg.MaxDeliver = -1
		}
	}
	if ch.Backoff != nil {
		cfg.BackOff = *ch.Backoff
		if len(cfg.BackOff) > 0 {
			cfg.AckWait = cfg.BackOff[0]
		}
	}
	if ch.InactiveThreshold != nil {
		cfg.InactiveThreshold = *ch.InactiveThreshold
	}
}

// Durables returns the queues: the durable consumers of the partitions
// (ephemeral ones, such as the ordered consumers of reads and watches, are
// left out), one Consumer per name with its partitions' state summed, in
// the order partition 0 lists them.
func (s *Store) Durables(ctx context.Context) ([]Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var names []string
	byName := map[string][]partitionConsumer{}
	for _, part := range st.parts {
		infos, err := durables(ctx, part.events)
		if err != nil {
			return nil, s.classify(err)
		}
		for _, info := range infos {
			if _, seen := byName[info.Name]; !seen {
				names = append(names, info.Name)
			}
			byName[info.Name] = append(byName[info.Name], partitionConsumer{part.Partition, info})
		}
	}
	out := make([]Consumer, 0, len(names))
	for _, name := range names {
		out = append(out, queueOf(st, byName[name]))
	}
	return out, nil
}

func durables(ctx context.Context, stream jetstream.Stream) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Durable != "" {
			out = append(out, info)
		}
	}
	return out, list.Err()
}

// partitionConsumer is what JetStream reports of a queue's consumer on
// one partition.
type partitionConsumer struct {
	Partition
	info *jetstream.ConsumerInfo
}

// queueOf is the Consumer of a queue whose consumers are have (at least
// one, by partition): the settings of the first, in the queue's terms;
// the counts summed; the latest activity; the earliest creation; and the
// partitions where it is missing.
func queueOf(st streams, have []partitionConsumer) Consumer {
	first := *have[0].info
	first.Config = have[0].queueConfigOf(first.Config)
	q := consumerOf(&first)
	q.NumPending, q.NumAckPending, q.NumRedelivered, q.NumWaiting = 0, 0, 0, 0
	found := map[int]bool{}
	for _, pc := range have {
		c := consumerOf(pc.info)
		found[pc.Number] = true
		if st.parts[0].Of > 0 {
			c.Filters = pc.queueFiltersOf(c.Filters)
			q.Partitions = append(q.Partitions, PartitionConsumer{Partition: pc.Partition, Consumer: c})
		}
		q.NumPending += c.NumPending
		q.NumAckPending += c.NumAckPending
		q.NumRedelivered += c.NumRedelivered
		q.NumWaiting += c.NumWaiting
		if c.LastDelivery.After(q.LastDelivery) {
			q.LastDelivery = c.LastDelivery
		}
		if c.LastAck.After(q.LastAck) {
			q.LastAck = c.LastAck
		}
		if c.Created.Before(q.Created) {
			q.Created = c.Created
		}
	}
	for _, part := range st.parts {
		if !found[part.Number] {
			q.Missing = append(q.Missing, part.Partition)
		}
	}
	return q
}

// queueConsumers are the queue name's consumers, by partition, and
// ErrConsumerNotFound when no partition has one.
func queueConsumers(ctx context.Context, st streams, name string) ([]partitionConsumer, error) {
	var have []partitionConsumer
	for _, part := range st.parts {
		info, err := consumerInfo(ctx, part.events, name)
		if errors.Is(err, ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		have = append(have, partitionConsumer{part.Partition, info})
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrConsumerNotFound, name)
	}
	return have, nil
}

// Consumer returns the queue name (its consumers' state summed over the
// partitions), or ErrConsumerNotFound.
func (s *Store) Consumer(ctx context.Context, name string) (Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Consumer{}, err
	}
	defer cancel()
	have, err := queueConsumers(ctx, st, name)
	if err != nil {
		return Consumer{}, s.classify(err)
	}
	return queueOf(st, have), nil
}

func consumerInfo(ctx context.Context, stream jetstream.Stream, name string) (*jetstream.ConsumerInfo, error) {
	cons, err := stream.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrConsumerNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	if info.Config.Durable == "" {
		return nil, fmt.Errorf("%w: %s", ErrConsumerNotFound, name)
	}
	return info, nil
}

// UpdateConsumer applies change to the settings of the queue name, on
// every partition (creating its consumer, with the new settings, on a
// partition that misses it), and returns the queue after it; the
// companions follow it (the queue's redrive consumer takes the new
// settings). ErrConsumerNotFound when no partition has it; JetStream's
// refusal of the new settings together (max deliveries not above the
// backoff steps, say) wraps ErrInvalidArgument.
func (s *Store) UpdateConsumer(ctx context.Context, name string, change ConsumerChange) (Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Consumer{}, err
	}
	defer cancel()
	have, err := queueConsumers(ctx, st, name)
	if err != nil {
		return Consumer{}, s.classify(err)
	}
	cfg := have[0].queueConfigOf(have[0].info.Config)
	change.apply(&cfg)
	exists := map[int]bool{}
	for _, pc := range have {
		exists[pc.Number] = true
	}
	var updated []partitionConsumer
	for _, part := range st.parts {
		update := part.events.UpdateConsumer
		if !exists[part.Number] {
			update = part.events.CreateConsumer
		}
		cons, err := update(ctx, part.queueConfig(cfg))
		if err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && apiErr.Code == 400 {
				return Consumer{}, fmt.Errorf("%w: %s", ErrInvalidArgument, apiErr.Description)
			}
			return Consumer{}, s.classify(err)
		}
		updated = append(updated, partitionConsumer{part.Partition, cons.CachedInfo()})
	}
	for _, c := range s.companionsNow() {
		c.ConsumerUpdated(ctx, cfg)
	}
	return queueOf(st, updated), nil
}

// DeleteConsumer deletes the queue name: its consumer on every partition
// (one deleted already, by a deletion that failed half-way, is passed
// over); the companions follow it (its redrive consumer and markers go,
// its dead letters stay). ErrConsumerNotFound when no partition has it.
func (s *Store) DeleteConsumer(ctx context.Context, name string) error {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	have, err := queueConsumers(ctx, st, name)
	if err != nil {
		return s.classify(err)
	}
	for _, pc := range have {
		err := st.of(pc.Partition).events.DeleteConsumer(ctx, name)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return s.classify(err)
		}
	}
	for _, c := range s.companionsNow() {
		c.ConsumerDeleted(ctx, name)
	}
	return nil
}

// checkDurableCap refuses a new queue when max or more exist (max 0: no
// cap); a queue counts once, whatever its number of partitions. Counting
// and creating are two steps, so nodes creating consumers at the same
// moment can each see room for one more: the cap can be overshot by at
// most the number of creations racing (one per node at a time, in
// practice a few). JetStream's own limit (StreamConfig.MaxConsumers,
// error 10026) would be exact, but it counts every consumer, the
// ephemeral ones of reads and watches included, so a full cap would
// refuse GetOrderHistory and WatchOrders catch-ups.
func checkDurableCap(ctx context.Context, st streams, max int) error {
	if max <= 0 {
		return nil
	}
	names := map[string]bool{}
	for _, part := range st.parts {
		have, err := durables(ctx, part.events)
		if err != nil {
			return err
		}
		for _, info := range have {
			names[info.Name] = true
		}
	}
	if len(names) >= max {
		return fmt.Errorf("%w: %d durable consumers exist, the most allowed (--max-consumers-durable)", ErrTooManyConsumers, len(names))
	}
	return nil
}

// StatusesOfFilters returns the event types selected by consumer filter
// subjects (ORDERS.<event>.…), in order; nil when they select every event
// or are not ordersd's.
func StatusesOfFilters(filters []string) []ordersv1.OrderStatus {
	var out []ordersv1.OrderStatus
	for _, f := range filters {
		parts := strings.Split(f, ".")
		if len(parts) < 2 || parts[0] != StreamName {
			return nil
		}
		found := false
		for status, token := range eventTokens {
			if token == parts[1] {
				out, found = append(out, status), true
			}
		}
		if !found {
			return nil
		}
	}
	return out
}
