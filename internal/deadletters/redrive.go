package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// maxRedriveAll bounds the dead letters one RedriveDeadLetters with all
// redrives, so one call does bounded work.
const maxRedriveAll = 10_000

// Redrive hands dead letters of consumer back to it (see the package
// comment on dead letters): the given ids, or with all every one (at most
// maxRedriveAll; more says some remain). It returns the ids redriven and
// those that are not dead letters of the consumer;
// eventstore.ErrConsumerNotFound when the consumer does not exist.
func (s *Store) Redrive(ctx context.Context, consumer string, ids []uint64, all bool) (redriven, notFound []uint64, more bool, err error) {
	d, err := s.open(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	// The queue's consumer is looked up on the first partition now (so an
	// unknown queue is NOT_FOUND whatever the ids), and on each other
	// partition of a letter below.
	first := s.events.Layout().All()[0]
	if err := d.ensureRedriveConsumer(ctx, consumer, first); err != nil {
		return nil, nil, false, s.events.Classify(err)
	}
	checked := map[eventstore.Partition]bool{first: true}
	var letters []*jetstream.RawStreamMsg
	if all {
		for seq := uint64(1); ; {
			raw, err := d.next(ctx, consumer, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, nil, false, s.events.Classify(err)
			}
			if len(letters) == maxRedriveAll {
				more = true
				break
			}
			letters = append(letters, raw)
			seq = raw.Sequence + 1
		}
	}
	for _, id := range ids {
		raw, err := d.letterOf(ctx, consumer, id) // bounded by its own step
		if errors.Is(err, ErrNotFound) {
			notFound = append(notFound, id)
			continue
		}
		if err != nil {
			return nil, nil, false, s.events.Classify(err)
		}
		letters = append(letters, raw)
	}
	for _, raw := range letters {
		stepCtx, cancel := s.step(ctx)
		letter, err := d.read(stepCtx, raw)
		if err == nil && letter.EventSeq != 0 && !checked[letter.Partition] {
			if err = d.ensureRedriveConsumer(stepCtx, consumer, letter.Partition); err == nil {
				checked[letter.Partition] = true
			}
		}
		if err == nil && letter.EventSeq != 0 {
			err = d.redrive(stepCtx, consumer, letter)
		}
		cancel()
		switch {
		case err != nil:
			// The ones redriven so far stay redriven; a retry goes on.
			return nil, nil, false, s.events.Classify(err)
		case letter.EventSeq == 0:
			notFound = append(notFound, raw.Sequence) // its event cannot be found: purge it
		default:
			redriven = append(redriven, letter.ID)
		}
	}
	return redriven, notFound, more, nil
}

// redrive stores the marker of one dead letter, then deletes the dead
// letter. The marker carries the dead letter's id as Nats-Msg-Id, so a
// redrive retried after the delete failed stores no second marker (within
// the duplicate window).
func (d *opened) redrive(ctx context.Context, consumer string, letter Letter) error {
	data, err := json.Marshal(redriveMarker{StreamSeq: letter.EventSeq, DeadLetter: letter.ID,
		Partition: letter.Partition.Number, Partitions: letter.Partition.Of})
	if err != nil {
		return err
	}
	msg := nats.NewMsg(redriveSubject(consumer))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, "redrive-"+strconv.FormatUint(letter.ID, 10))
	if _, err := d.s.js.PublishMsg(ctx, msg); err != nil {
		return err
	}
	if err := d.dl.DeleteMsg(ctx, letter.ID); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}

// ensureRedriveConsumer checks that the queue has its consumer on
// partition p, and creates the queue's pull consumer on ORDERS_REDRIVE
// when it has none, with the settings of that consumer (the same on
// every partition). It starts at the markers stored from now on: markers of an
// earlier consumer of the name (deleted, or expired while idle) were acked
// or given up on, and must not be delivered again.
func (d *opened) ensureRedriveConsumer(ctx context.Context, consumer string, p eventstore.Partition) error {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	main, err := d.s.js.Consumer(ctx, p.Stream(), consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %s", eventstore.ErrConsumerNotFound, consumer)
	}
	if err != nil {
		return err
	}
	_, err = d.red.Consumer(ctx, consumer)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	cfg := redriveConfig(main.CachedInfo().Config)
	cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	_, err = d.red.CreateConsumer(ctx, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) { // made meanwhile by another call
		err = nil
	}
	return err
}

// redriveConfig is the redrive consumer of a consumer of ORDERS: same
// name, acks and limits, on the consumer's markers.
func redriveConfig(main jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           main.Durable,
		Description:       "ordersd redriven dead letters of " + main.Durable,
		FilterSubject:     redriveSubject(main.Durable),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           main.AckWait,
		MaxDeliver:        main.MaxDeliver,
		BackOff:           main.BackOff,
		MaxAckPending:     main.MaxAckPending,
		InactiveThreshold: main.InactiveThreshold,
	}
}

// redriveMarker is the payload of a redrive marker. Layout 2's markers
// are as they always were (no partition fields), so a marker without them
// is of the stream ORDERS.
type redriveMarker struct {
	StreamSeq  uint64 `json:"stream_seq"`  // of the event in its partition's stream
	DeadLetter uint64 `json:"dead_letter"` // the id of the dead letter redriven
	// Partition and Partitions name the event's partition in layout 3
	// (its Number and Of).
	Partition  int `json:"partition,omitempty"`
	Partitions int `json:"partitions,omitempty"`
}

// ParseRedriveMarker returns the partition and sequence of the event a
// redrive marker points at: the zero Partition (ORDERS) for a marker of
// layout 2.
func ParseRedriveMarker(data []byte) (eventstore.Partition, uint64, error) {
	var m redriveMarker
	if err := json.Unmarshal(data, &m); err != nil || m.StreamSeq == 0 ||
		m.Partitions < 0 || m.Partitions > eventstore.MaxPartitions || m.Partition < 0 || (m.Partition >= m.Partitions && m.Partition != 0) {
		return eventstore.Partition{}, 0, fmt.Errorf("%w: not a redrive marker", eventstore.ErrCorruptEvent)
	}
	return eventstore.Partition{Number: m.Partition, Of: m.Partitions}, m.StreamSeq, nil
}

// RedriveConsumer returns the consumer's pull consumer on ORDERS_REDRIVE,
// or eventstore.ErrConsumerNotFound when it has none (nothing was ever
// redriven to it, or it expired).
func (s *Store) RedriveConsumer(ctx context.Context, consumer string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	cons, err := s.js.Consumer(ctx, RedriveStream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", eventstore.ErrConsumerNotFound, consumer)
	}
	return cons, s.events.Classify(err)
}

// RedrivePending is how many redriven dead letters of a consumer wait for
// their ack (0 when nothing was ever redriven to it).
func (s *Store) RedrivePending(ctx context.Context, name string) (uint64, error) {
	cons, err := s.RedriveConsumer(ctx, name)
	if errors.Is(err, eventstore.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info := cons.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}

// ConsumerUpdated implements eventstore.Companion: the consumer's redrive
// consumer, if it has one, takes its new settings.
func (s *Store) ConsumerUpdated(ctx context.Context, cfg jetstream.ConsumerConfig) {
	name := cfg.Durable
	if red, err := s.js.Consumer(ctx, RedriveStream, name); err == nil {
		// Where it starts cannot change: keep it as it was created.
		have, want := red.CachedInfo().Config, redriveConfig(cfg)
		want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
		if _, err := s.js.UpdateConsumer(ctx, RedriveStream, want); err != nil {
			s.log.Warn("redrive consumer not updated", "consumer", name, "err", err)
		}
	}
}

// ConsumerDeleted implements eventstore.Companion: the consumer's redrive
// consumer and markers go with it; its dead letters stay.
func (s *Store) ConsumerDeleted(ctx context.Context, name string) {
	if err := s.js.DeleteConsumer(ctx, RedriveStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Warn("redrive consumer not deleted", "consumer", name, "err", err)
		return
	}
	if red, err := s.js.Stream(ctx, RedriveStream); err == nil {
		if err := red.Purge(ctx, jetstream.WithPurgeSubject(redriveSubject(name))); err != nil {
			s.log.Warn("redrive markers not purged", "consumer", name, "err", err)
		}
	}
}
