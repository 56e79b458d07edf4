package deadletters

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// List returns up to limit dead letters of consumer with ids
// greater than after, oldest first, and whether more follow.
func (s *Store) List(ctx context.Context, consumer string, after uint64, limit int) ([]Letter, bool, error) {
	d, err := s.open(ctx)
	if err != nil {
		return nil, false, err
	}
	var out []Letter
	for seq := after + 1; ; {
		raw, err := d.next(ctx, consumer, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, false, nil
		}
		if err != nil {
			return nil, false, s.events.Classify(err)
		}
		if len(out) == limit {
			return out, true, nil
		}
		stepCtx, cancel := s.step(ctx)
		letter, err := d.read(stepCtx, raw)
		cancel()
		if err != nil {
			return nil, false, s.events.Classify(err)
		}
		out = append(out, letter)
		seq = raw.Sequence + 1
	}
}

// next reads the first dead letter of consumer at or after seq.
func (d *opened) next(ctx context.Context, consumer string, seq uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	return d.dl.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(deadLettersOf(consumer)))
}

// letterOf reads dead letter id and checks it is one of consumer's.
func (d *opened) letterOf(ctx context.Context, consumer string, id uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := d.s.step(ctx)
	defer cancel()
	raw, err := d.dl.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(raw.Subject, "."+consumer) {
		return nil, ErrNotFound
	}
	return raw, nil
}

// Count is how many dead letters of one consumer are stored for
// one reason.
type Count struct {
	Consumer string
	Reason   Reason
	Count    uint64
}

// Counts counts the stored dead letters per consumer and reason
// (redriven ones with the others), from the stream's per-subject counts:
// no message is read. While dead letters are not recorded none is stored,
// and it returns none: the consumers are described all the same.
func (s *Store) Counts(ctx context.Context) ([]Count, error) {
	d, err := s.open(ctx)
	if errors.Is(err, ErrOff) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.step(ctx)
	defer cancel()
	info, err := d.dl.Info(ctx, jetstream.WithSubjectFilter(advisoryPrefix+">"))
	if err != nil {
		return nil, s.events.Classify(err)
	}
	type key struct {
		consumer string
		reason   Reason
	}
	counts := map[key]uint64{}
	for subject, n := range info.State.Subjects {
		tokens := strings.Split(strings.TrimPrefix(subject, advisoryPrefix), ".")
		if len(tokens) != 3 {
			continue
		}
		k := key{consumer: tokens[2], reason: MaxDeliveries}
		if tokens[0] == advisoryTerminated {
			k.reason = Terminated
		}
		counts[k] += n
	}
	out := make([]Count, 0, len(counts))
	for k, n := range counts {
		out = append(out, Count{Consumer: k.consumer, Reason: k.reason, Count: n})
	}
	return out, nil
}

// countSubjects counts the messages of a stream on a subject filter.
func countSubjects(ctx context.Context, stream jetstream.Stream, filter string) (uint64, error) {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	return total, nil
}
