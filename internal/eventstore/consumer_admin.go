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

// Consumer is a durable consumer of ORDERS: its settings and its state,
// as JetStream reports them now.
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

// Durables returns the durable consumers of ORDERS (ephemeral ones, such
// as the ordered consumers of reads and watches, are left out).
func (s *Store) Durables(ctx context.Context) ([]Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	infos, err := durables(ctx, st.parts[0].events)
	if err != nil {
		return nil, s.classify(err)
	}
	out := make([]Consumer, 0, len(infos))
	for _, info := range infos {
		out = append(out, consumerOf(info))
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

// Consumer returns the durable consumer name of ORDERS, or
// ErrConsumerNotFound.
func (s *Store) Consumer(ctx context.Context, name string) (Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Consumer{}, err
	}
	defer cancel()
	info, err := consumerInfo(ctx, st.parts[0].events, name)
	if err != nil {
		return Consumer{}, s.classify(err)
	}
	return consumerOf(info), nil
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

// UpdateConsumer applies change to the settings of the durable consumer
// name, and returns the consumer after it; the companions follow it (the
// consumer's redrive consumer takes the new settings).
// ErrConsumerNotFound when there is none; JetStream's refusal of the new
// settings together (max deliveries not above the backoff steps, say)
// wraps ErrInvalidArgument.
func (s *Store) UpdateConsumer(ctx context.Context, name string, change ConsumerChange) (Consumer, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Consumer{}, err
	}
	defer cancel()
	stream := st.parts[0].events
	info, err := consumerInfo(ctx, stream, name)
	if err != nil {
		return Consumer{}, s.classify(err)
	}
	cfg := info.Config
	change.apply(&cfg)
	cons, err := stream.UpdateConsumer(ctx, cfg)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return Consumer{}, fmt.Errorf("%w: %s", ErrInvalidArgument, apiErr.Description)
		}
		return Consumer{}, s.classify(err)
	}
	for _, c := range s.companionsNow() {
		c.ConsumerUpdated(ctx, cfg)
	}
	return consumerOf(cons.CachedInfo()), nil
}

// DeleteConsumer deletes the durable consumer name; the companions follow
// it (its redrive consumer and markers go, its dead letters stay).
// ErrConsumerNotFound when there is none.
func (s *Store) DeleteConsumer(ctx context.Context, name string) error {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	stream := st.parts[0].events
	if _, err := consumerInfo(ctx, stream, name); err != nil {
		return s.classify(err)
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%w: %s", ErrConsumerNotFound, name)
		}
		return s.classify(err)
	}
	for _, c := range s.companionsNow() {
		c.ConsumerDeleted(ctx, name)
	}
	return nil
}

// checkDurableCap refuses a new durable consumer when max or more exist
// on ORDERS (max 0: no cap). Counting and creating are two steps, so
// nodes creating consumers at the same moment can each see room for one
// more: the cap can be overshot by at most the number of creations racing
// (one per node at a time, in practice a few). JetStream's own limit
// (StreamConfig.MaxConsumers, error 10026) would be exact, but it counts
// every consumer, the ephemeral ones of reads and watches included, so a
// full cap would refuse GetOrderHistory and WatchOrders catch-ups.
func checkDurableCap(ctx context.Context, stream jetstream.Stream, max int) error {
	if max <= 0 {
		return nil
	}
	have, err := durables(ctx, stream)
	if err != nil {
		return err
	}
	if len(have) >= max {
		return fmt.Errorf("%w: %d durable consumers exist, the most allowed (--max-consumers-durable)", ErrTooManyConsumers, len(have))
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
