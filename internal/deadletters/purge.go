package deadletters

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Purge removes dead letters of consumer: the given ids (those
// that are not its dead letters are skipped), or with all every one. It
// returns how many it removed.
func (s *Store) Purge(ctx context.Context, consumer string, ids []uint64, all bool) (uint64, error) {
	d, err := s.open(ctx)
	if err != nil {
		return 0, err
	}
	if all {
		ctx, cancel := s.step(ctx)
		defer cancel()
		before, err := countSubjects(ctx, d.dl, deadLettersOf(consumer))
		if err != nil {
			return 0, s.events.Classify(err)
		}
		err = d.dl.Purge(ctx, jetstream.WithPurgeSubject(deadLettersOf(consumer)))
		return before, s.events.Classify(err)
	}
	var purged uint64
	for _, id := range ids {
		if _, err := d.letterOf(ctx, consumer, id); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return purged, s.events.Classify(err)
		}
		stepCtx, cancel := s.step(ctx)
		err := d.dl.DeleteMsg(stepCtx, id)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return purged, s.events.Classify(err)
		}
		purged++
	}
	return purged, nil
}
