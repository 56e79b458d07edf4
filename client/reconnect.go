package client

import (
	"context"
	"errors"
)

// reconnect runs stream, and again after each break with growing pauses
// (stream resets them once a stream works), until ctx ends (nil) or the
// stream fails for good: with an error that another node would give too
// (permanent), or with one that stream marks as final (finalError). name
// says which stream in the log ("consume", "watch"); attrs adds what
// identifies it there, read at each break.
func (c *Client) reconnect(ctx context.Context, name string, attrs func() []any, stream func(ctx context.Context, pause *backoff) error) error {
	pause := newBackoff(reconnectMin, reconnectMax)
	for {
		err := stream(ctx, pause)
		var final finalError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &final):
			return final.err
		case permanent(err):
			return err
		}
		d := pause.next()
		c.log.Info(name+" stream broke; reopening", append(attrs(), "err", err, "pause", d)...)
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// finalError ends reconnect with err, which is not the stream's: a
// handler's error, say.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }
