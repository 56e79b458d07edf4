package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// ErrConsumerMismatch: a consumer exists under the name, with settings
// other than those asked for.
var ErrConsumerMismatch = errors.New("consumer exists with other settings")

// Defaults of durable consumers created by ConsumeOrders.
const (
	DefaultAckWait = 30 * time.Second
	// maxAckPending bounds the unacknowledged deliveries of one consumer,
	// all clients together; each client is bounded by its max_in_flight.
	maxAckPending = 20_000
)

// ConsumerSettings are the settings of a durable consumer. Zero fields
// take defaults when the consumer is created, and match anything when it
// exists.
type ConsumerSettings struct {
	AckWait       time.Duration
	MaxDeliveries int             // 0: unlimited
	Backoff       []time.Duration // replaces AckWait when set
	StartNew      bool
	StartSequence uint64
	StartTime     time.Time
	// InactiveThreshold is how long the consumer may go without a client
	// before JetStream deletes it (0: never). It is the node's
	// --consumer-inactive-threshold, not a client's choice, and applies
	// when the consumer is created; QueueService.UpdateConsumer changes it.
	InactiveThreshold time.Duration
}

// config is the consumer to create for name, filters and settings.
func (s ConsumerSettings) config(name string, filters []string) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "ordersd work queue",
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.AckWait,
		MaxDeliver:     s.MaxDeliveries,
		BackOff:        s.Backoff,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  maxAckPending,
		// Durable consumers expire by inactivity on nats-server 2.10+.
		InactiveThreshold: s.InactiveThreshold,
	}
	switch {
	case len(s.Backoff) > 0:
		cfg.AckWait = s.Backoff[0] // what JetStream makes of it
	case cfg.AckWait == 0:
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	switch {
	case s.StartNew:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case s.StartSequence != 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.StartSequence
	case !s.StartTime.IsZero():
		start := s.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	return cfg
}

// differences lists, in words, where an existing consumer's config differs
// from what was asked for; empty when it matches.
func (s ConsumerSettings) differences(have jetstream.ConsumerConfig, filters []string) []string {
	var diffs []string
	haveFilters := have.FilterSubjects
	if have.FilterSubject != "" {
		haveFilters = []string{have.FilterSubject}
	}
	if !sameSet(haveFilters, filters) {
		diffs = append(diffs, fmt.Sprintf("statuses and customer_id: the consumer receives %s, not %s", describeFilters(haveFilters), describeFilters(filters)))
	}
	if have.AckPolicy != jetstream.AckExplicitPolicy {
		diffs = append(diffs, "ack policy: the consumer does not take explicit acks (it was not made by ordersd)")
	}
	want := s.config(have.Durable, filters)
	if s.AckWait != 0 && have.AckWait != want.AckWait {
		diffs = append(diffs, fmt.Sprintf("ack_wait: %s, not %s", have.AckWait, want.AckWait))
	}
	if s.MaxDeliveries != 0 && have.MaxDeliver != want.MaxDeliver {
		diffs = append(diffs, fmt.Sprintf("max_deliveries: %d, not %d", have.MaxDeliver, want.MaxDeliver))
	}
	if len(s.Backoff) != 0 && !slices.Equal(have.BackOff, want.BackOff) {
		diffs = append(diffs, fmt.Sprintf("backoff: %v, not %v", have.BackOff, want.BackOff))
	}
	startAsked := s.StartNew || s.StartSequence != 0 || !s.StartTime.IsZero()
	if startAsked && (have.DeliverPolicy != want.DeliverPolicy || have.OptStartSeq != want.OptStartSeq ||
		!sameTime(have.OptStartTime, want.OptStartTime)) {
		diffs = append(diffs, fmt.Sprintf("start: %s, not %s", describeStart(have), describeStart(want)))
	}
	return diffs
}

// ensureConsumer binds to the queue name (its consumer on every
// partition), creating it with the settings when it does not exist
// (unless maxDurables queues exist already), and fails with
// ErrConsumerMismatch when it exists with other settings.
func ensureConsumer(ctx context.Context, store WorkQueueStore, name string, filters []string, s ConsumerSettings, maxDurables int) ([]eventstore.QueueConsumer, error) {
	queue, err := store.EnsureConsumers(ctx, s.config(name, filters), maxDurables)
	if err != nil {
		return nil, err
	}
	for _, qc := range queue {
		if diffs := s.differences(qc.Config, filters); len(diffs) > 0 {
			return nil, fmt.Errorf("%w: consumer %q: %s", ErrConsumerMismatch, name, strings.Join(diffs, "; "))
		}
	}
	return queue, nil
}

func sameSet(a, b []string) bool {
	norm := func(s []string) []string {
		s = slices.Clone(s)
		s = slices.DeleteFunc(s, func(f string) bool { return f == eventstore.StreamSubjects })
		slices.Sort(s)
		return s
	}
	return slices.Equal(norm(a), norm(b))
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func describeFilters(f []string) string {
	if len(f) == 0 {
		return "every event"
	}
	return strings.Join(f, ", ")
}

func describeStart(c jetstream.ConsumerConfig) string {
	switch c.DeliverPolicy {
	case jetstream.DeliverNewPolicy:
		return "new events"
	case jetstream.DeliverByStartSequencePolicy:
		return fmt.Sprintf("sequence %d", c.OptStartSeq)
	case jetstream.DeliverByStartTimePolicy:
		if c.OptStartTime != nil {
			return "time " + c.OptStartTime.UTC().Format(time.RFC3339Nano)
		}
	}
	return "the first event"
}
