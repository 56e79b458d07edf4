package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// WatchOptions say which events Watch follows and from where. Without a
// start (ResumeAfter, ReplayAll, FromSequence, FromTime) it follows the
// events stored from when it begins.
type WatchOptions struct {
	// Statuses are the event types to follow; empty means all.
	Statuses []ordersv1.OrderStatus
	// OrderID follows one order's events only.
	OrderID string
	// CustomerID follows one customer's orders only.
	CustomerID string
	// ResumeAfter goes on after a saved checkpoint: the ResumePosition of
	// the last update handled, from an earlier Watch on any node of the
	// deployment. Nothing after it is missed, nothing before it handed
	// over again. A position the deployment refuses (altered, or issued
	// before the stream was migrated or created anew) ends Watch with
	// INVALID_ARGUMENT; it is never taken for a start from the beginning.
	ResumeAfter string
	// ReplayAll starts with every stored event.
	ReplayAll bool
	// FromSequence starts at this sequence of the stream ORDERS (an
	// OrderEvent.Sequence). It means something only while every order is
	// in that one stream; ResumeAfter is the checkpoint that lasts.
	FromSequence uint64
	// FromTime starts with the events stored at or after this time.
	FromTime time.Time
	// Heartbeat is the stream's heartbeat interval; a stream silent for
	// three of them is reopened. 1 s to 5 min; DefaultHeartbeat when zero.
	Heartbeat time.Duration
}

// WatchUpdate is what Watch hands its handler: an event, or the news that
// the watch has caught up.
type WatchUpdate struct {
	// Event is an order event; nil when CaughtUp is set.
	Event *ordersv1.OrderEvent
	// CaughtUp says that every stored event asked for has been handed
	// over, and what follows is live. It comes once when the replay
	// reaches the live tail (at once when there is nothing to replay), and
	// again after each reconnect once the resumed watch is live again.
	CaughtUp bool
	// ResumePosition is the checkpoint after this update: save it once the
	// update is handled, and pass it as WatchOptions.ResumeAfter to go on
	// from there. It is opaque: keep it as it is.
	ResumePosition string
}

// WatchHandler handles the updates of Watch, one at a time, in order.
// Returning an error ends the watch with it.
type WatchHandler func(ctx context.Context, u WatchUpdate) error

// Watch hands handler the events that opts select, in stream order, until
// ctx ends (it returns nil then) or handler fails (it returns that error).
// It returns early only with an error that another node would give too
// (bad filters, permissions).
//
// Each event is handed over exactly once, however often the stream breaks
// (its node died or shut down, the connection was cut, or it went silent):
// Watch reopens it on a healthy node after the resume position of the last
// response it got. A watch that started from now and broke before its
// first response resumes from the time it began, by this machine's clock;
// keep clocks in sync, or start from a position, when no event may be
// missed.
func (c *Client) Watch(ctx context.Context, opts WatchOptions, handler WatchHandler) error {
	if handler == nil {
		return fmt.Errorf("%w: Watch needs a handler", ErrInvalidOption)
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Heartbeat < time.Second || opts.Heartbeat > 5*time.Minute {
		return fmt.Errorf("%w: Heartbeat must be 1s to 5m, got %s", ErrInvalidOption, opts.Heartbeat)
	}
	starts := 0
	for _, set := range []bool{opts.ResumeAfter != "", opts.ReplayAll, opts.FromSequence != 0, !opts.FromTime.IsZero()} {
		if set {
			starts++
		}
	}
	if starts > 1 {
		return fmt.Errorf("%w: ResumeAfter, ReplayAll, FromSequence and FromTime exclude each other", ErrInvalidOption)
	}
	w := &watchSession{c: c, opts: opts, handler: handler, began: time.Now(), position: opts.ResumeAfter}
	return c.reconnect(ctx, "watch", func() []any { return []any{"resume_after", w.position} }, w.stream)
}

// watchSession is the state of one Watch call.
type watchSession struct {
	c       *Client
	opts    WatchOptions
	handler WatchHandler
	began   time.Time
	streams int // streams opened so far
	// position is the resume position of the last response handled (or
	// the caller's ResumeAfter); empty before the first.
	position string
}

// request is the WatchOrdersRequest of the next stream: after the last
// response handled, else from where the caller asked.
func (w *watchSession) request() *ordersv1.WatchOrdersRequest {
	req := &ordersv1.WatchOrdersRequest{
		Statuses:          w.opts.Statuses,
		OrderId:           w.opts.OrderID,
		CustomerId:        w.opts.CustomerID,
		HeartbeatInterval: durationpb.New(w.opts.Heartbeat),
	}
	switch {
	case w.position != "":
		req.Start = &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: w.position}
	case w.opts.ReplayAll:
		req.Start = &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}
	case w.opts.FromSequence > 0:
		req.Start = &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: w.opts.FromSequence}
	case !w.opts.FromTime.IsZero():
		req.Start = &ordersv1.WatchOrdersRequest_StartTime{StartTime: timestamppb.New(w.opts.FromTime)}
	case w.streams > 0:
		// From now, again: now is when the watch began.
		req.Start = &ordersv1.WatchOrdersRequest_StartTime{StartTime: timestamppb.New(w.began)}
	}
	return req
}

// stream runs one WatchOrders stream until it ends.
func (w *watchSession) stream(ctx context.Context, pause *backoff) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silence := silenceFactor * w.opts.Heartbeat
	dog := newWatchdog(silence, cancel)
	defer dog.stop()
	req := w.request()
	w.streams++
	st, err := w.c.WatchOrders(sctx, req)
	if err != nil {
		return streamError(sctx, err)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return streamError(sctx, err)
		}
		dog.kick(silence)
		pause.reset()
		u := WatchUpdate{Event: resp.GetEvent(), CaughtUp: resp.GetCaughtUp(), ResumePosition: resp.GetResumePosition()}
		if u.Event != nil || u.CaughtUp {
			dog.stop() // the handler's time is not the stream's silence
			if err := w.handler(ctx, u); err != nil {
				return finalError{err}
			}
			dog.kick(silence)
		}
		// A heartbeat or a skip notice moves the position on too.
		if u.ResumePosition != "" {
			w.position = u.ResumePosition
		}
	}
}
