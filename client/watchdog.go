package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errStreamSilent ends a stream that sent nothing, not even a heartbeat,
// for several heartbeat intervals: its node or the path to it is gone.
var errStreamSilent = status.Error(codes.Unavailable, "the stream was silent for several heartbeat intervals")

// silenceFactor is how many heartbeat intervals a stream may be silent
// before it is given up.
const silenceFactor = 3

// watchdog cancels a stream's context with errStreamSilent when kick is not
// called for silence; stop ends it.
type watchdog struct{ timer *time.Timer }

func newWatchdog(silence time.Duration, cancel context.CancelCauseFunc) *watchdog {
	return &watchdog{timer: time.AfterFunc(silence, func() { cancel(errStreamSilent) })}
}

func (w *watchdog) kick(silence time.Duration) { w.timer.Reset(silence) }
func (w *watchdog) stop()                      { w.timer.Stop() }

// streamError is the error a stream ended with: the watchdog's when it
// cut the stream off.
func streamError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errStreamSilent) {
		return cause
	}
	return err
}
