package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Durables returns the durable consumers of ORDERS (ephemeral ones, such
// as the ordered consumers of reads and watches, are left out).
func (s *Store) Durables(ctx context.Context) ([]*jetstream.ConsumerInfo, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	stream := st.orders
	infos, err := durables(ctx, stream)
	return infos, s.classify(err)
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

// ConsumerInfo returns the durable consumer name of ORDERS as JetStream
// reports it now, or ErrConsumerNotFound.
func (s *Store) ConsumerInfo(ctx context.Context, name string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	stream := st.orders
	info, err := consumerInfo(ctx, stream, name)
	return info, s.classify(err)
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

// RedrivePending is how many redriven dead letters of a consumer wait for
// their ack (0 when nothing was ever redriven to it).
func (s *Store) RedrivePending(ctx context.Context, name string) (uint64, error) {
	cons, err := s.RedriveConsumer(ctx, name)
	if errors.Is(err, ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info := cons.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}

// UpdateConsumer applies change to the settings of the durable consumer
// name, and to its redrive consumer, and returns the consumer after it.
// ErrConsumerNotFound when there is none; JetStream's refusal of the new
// settings wraps ErrInvalidArgument.
func (s *Store) UpdateConsumer(ctx context.Context, name string, change func(*jetstream.ConsumerConfig)) (*jetstream.ConsumerInfo, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	stream := st.orders
	info, err := consumerInfo(ctx, stream, name)
	if err != nil {
		return nil, s.classify(err)
	}
	cfg := info.Config
	change(&cfg)
	cons, err := stream.UpdateConsumer(ctx, cfg)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return nil, fmt.Errorf("%w: %s", ErrInvalidArgument, apiErr.Description)
		}
		return nil, s.classify(err)
	}
	if red, err := s.js.Consumer(ctx, RedriveStream, name); err == nil {
		// Where it starts cannot change: keep it as it was created.
		have, want := red.CachedInfo().Config, redriveConfig(cfg)
		want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
		if _, err := s.js.UpdateConsumer(ctx, RedriveStream, want); err != nil {
			s.log.Warn("redrive consumer not updated", "consumer", name, "err", err)
		}
	}
	return cons.CachedInfo(), nil
}

// DeleteConsumer deletes the durable consumer name, then its redrive
// consumer and markers. Its dead letters stay. ErrConsumerNotFound when
// there is none.
func (s *Store) DeleteConsumer(ctx context.Context, name string) error {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	stream := st.orders
	if _, err := consumerInfo(ctx, stream, name); err != nil {
		return s.classify(err)
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%w: %s", ErrConsumerNotFound, name)
		}
		return s.classify(err)
	}
	if err := s.js.DeleteConsumer(ctx, RedriveStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Warn("redrive consumer not deleted", "consumer", name, "err", err)
		return nil
	}
	if red, err := s.js.Stream(ctx, RedriveStream); err == nil {
		if err := red.Purge(ctx, jetstream.WithPurgeSubject(redriveSubject(name))); err != nil {
			s.log.Warn("redrive markers not purged", "consumer", name, "err", err)
		}
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
