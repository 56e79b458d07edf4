package deadletters

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// deadLettersRetry is how often, while dead letters are not recorded,
// their streams are provisioned again: a configuration fixed meanwhile
// (the overlapping stream changed) takes effect without a restart.
const deadLettersRetry = 30 * time.Second

// state is whether dead letters are recorded, and why not.
type state struct {
	mu    sync.Mutex
	off   error     // why not; nil when they are
	tried time.Time // when provisioning was last tried while off
}

// set records the outcome of a provisioning, with a log line when it
// changes.
func (d *state) set(log *slog.Logger, off error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case off != nil && (d.off == nil || d.off.Error() != off.Error()):
		log.Warn("dead letters are not recorded; everything else is served", "stream", Stream, "reason", off)
	case off == nil && d.off != nil:
		log.Info("dead letters are recorded again", "stream", Stream)
	}
	d.off, d.tried = off, time.Now()
}

// Off returns why dead letters are not recorded (wrapping ErrOff), nil
// when they are. While they are not, it provisions their streams again
// every deadLettersRetry.
func (s *Store) Off(ctx context.Context) error {
	s.state.mu.Lock()
	off, due := s.state.off, time.Since(s.state.tried) >= deadLettersRetry
	s.state.mu.Unlock()
	if off == nil || !due {
		return off
	}
	ctx, cancel := s.step(ctx)
	defer cancel()
	off, err := provision(ctx, s.js, s.events.Layout(), s.opts)
	if err != nil {
		return s.events.Classify(err)
	}
	s.state.set(s.log, off)
	return off
}
