package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff spaces out reconnects: it doubles from min to max, and each pause
// is drawn from the upper half of the current step so that clients cut off
// together do not come back together.
type backoff struct {
	min, max time.Duration
	step     time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

// next returns the pause before the next attempt.
func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.min
	} else {
		b.step = min(2*b.step, b.max)
	}
	return b.step/2 + rand.N(b.step/2+1)
}

// reset starts again from min, after an attempt that worked.
func (b *backoff) reset() { b.step = 0 }

// sleep waits d, or until ctx ends (false then).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Reconnect pauses of Consume and Watch.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)
