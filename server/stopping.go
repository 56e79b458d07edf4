package server

import (
	"context"
	"errors"
)

// errShuttingDown ends long-lived streams when the node begins to shut down.
var errShuttingDown = errors.New("ordersd is shutting down")

// streamContext is the context of a long-lived stream: it ends with the
// call, or as soon as the node begins to shut down (Deps.Stopping), so that
// shutdown need not wait for clients that never hang up. Streams ended that
// way answer UNAVAILABLE: reconnect, to another node if there is one.
func (s *OrderService) streamContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	if s.Stopping == nil {
		return ctx, func() { cancel(nil) }
	}
	stop := context.AfterFunc(s.Stopping, func() { cancel(errShuttingDown) })
	return ctx, func() { stop(); cancel(nil) }
}
