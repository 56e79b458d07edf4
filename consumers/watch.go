package consumers

import (
	"context"
	"errors"
	"slices"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// WatchSpec is what a WatchOrders client asked for.
type WatchSpec struct {
	Statuses   []ordersv1.OrderStatus // every status when empty
	OrderID    string                 // optional
	CustomerID string                 // optional
	// Where to start: with none of these, only events stored from now on.
	ReplayAll     bool
	StartSequence uint64
	StartTime     time.Time
	Heartbeat     time.Duration
}

func (s WatchSpec) replays() bool {
	return s.ReplayAll || s.StartSequence != 0 || !s.StartTime.IsZero()
}

// matches reports whether an event passes the spec's filters.
func (s WatchSpec) matches(ev *ordersv1.OrderEvent) bool {
	o := ev.GetOrder()
	if s.OrderID != "" && o.GetOrderId() != s.OrderID {
		return false
	}
	if s.CustomerID != "" && o.GetCustomerId() != s.CustomerID {
		return false
	}
	if len(s.Statuses) == 0 {
		return true
	}
	for _, st := range s.Statuses {
		if st == o.GetStatus() {
			return true
		}
	}
	return false
}

// filters are the subject filters that select the spec's events in the
// stream: a replay reads only the events asked for.
func (s WatchSpec) filters() ([]string, error) {
	return eventstore.FilterSubjects(eventstore.Filter{Statuses: s.Statuses, CustomerID: s.CustomerID, OrderID: s.OrderID})
}

// matchesUnreadable reports whether a message that is not an order event
// passes the spec's filters, by what its subject names: a message whose
// subject names no order passes only a spec without filters.
func (s WatchSpec) matchesUnreadable(u *eventstore.UnreadableError) bool {
	if u.OrderID == "" {
		return s.OrderID == "" && s.CustomerID == "" && len(s.Statuses) == 0
	}
	if (s.OrderID != "" && u.OrderID != s.OrderID) || (s.CustomerID != "" && u.CustomerID != s.CustomerID) {
		return false
	}
	if len(s.Statuses) == 0 {
		return true
	}
	status, _ := eventstore.SubjectStatus(u.Subject)
	return slices.Contains(s.Statuses, status)
}

// WatchUpdate is one message of a WatchOrders stream.
type WatchUpdate struct {
	Event *ordersv1.OrderEvent
	// Skipped is a stored message that matches the filters but is not an
	// order event; it takes an event's place in the stream order.
	Skipped   *eventstore.UnreadableError
	CaughtUp  bool
	Heartbeat bool
	live      *liveEvent // Event as the live fan-out shares it; nil for replayed events
}

// EncodedResponse returns the WatchOrdersResponse of a live event in the
// wire format, encoded once for every watcher that gets it (the bytes are
// shared: never change them), or nil for an update that is not a live
// event, which the caller encodes itself.
func (u WatchUpdate) EncodedResponse() ([]byte, error) {
	if u.live == nil {
		return nil, nil
	}
	return u.live.encoded()
}

// EventReader is what a Watcher needs of the event store
// (*eventstore.Store): reads of stored events, for replays and catch-up.
type EventReader interface {
	Read(ctx context.Context, req eventstore.ReadRequest, send func(*ordersv1.OrderEvent) error) (uint64, error)
	Locate(ctx context.Context, orderID string) (eventstore.OrderKey, error)
}

// Watcher serves WatchOrders streams from the node's Monitor and, for
// replays and catch-up, from the stream itself.
type Watcher struct {
	monitor *Monitor
	store   EventReader
}

// NewWatcher returns a Watcher.
func NewWatcher(monitor *Monitor, store EventReader) *Watcher {
	return &Watcher{monitor: monitor, store: store}
}

// Watch streams the spec's events to send, in stream order, each once,
// until ctx ends or send fails.
//
// It joins the live fan-out first and then, when there is something to
// replay, reads the stream from the start position until it has caught up;
// live events at or before the last one replayed are skipped, so the
// switch from replay to live neither loses nor repeats an event. If the
// watcher reads so slowly that its live buffer fills, it leaves the
// fan-out, catches up from the stream at its own pace (JetStream holds the
// backlog, not ordersd), and joins again: a slow watcher is throttled,
// never dropped, and never slows the others.
func (w *Watcher) Watch(ctx context.Context, spec WatchSpec, send func(WatchUpdate) error) error {
	w.monitor.metrics.Watching(1)
	defer w.monitor.metrics.Watching(-1)
	if spec.OrderID != "" && spec.CustomerID == "" && spec.replays() {
		// The order's customer makes the replay's filter literal; without
		// it JetStream would match the customer token against every
		// customer. An order not created yet keeps the wildcard.
		if key, err := w.store.Locate(ctx, spec.OrderID); err == nil {
			spec.CustomerID = key.CustomerID
		} else if !errors.Is(err, eventstore.ErrNotFound) {
			return err
		}
	}
	s := watchStream{w: w, spec: spec, send: send, lastSend: time.Now()}
	return s.run(ctx)
}

// watchStream is the state of one WatchOrders stream.
type watchStream struct {
	w          *Watcher
	spec       WatchSpec
	send       func(WatchUpdate) error
	served     uint64 // the stream sequence the watcher has been served up to
	positioned bool   // served is a position (else the spec's start is)
	caughtUp   bool   // caught_up has been sent
	lastSend   time.Time
}

func (s *watchStream) run(ctx context.Context) error {
	replay := s.spec.replays()
	for {
		live, joinedAt, err := s.w.monitor.join(ctx, s.spec)
		if err != nil {
			return err
		}
		if !replay && !s.caughtUp {
			s.advance(joinedAt) // only what comes after the call began
		}
		if replay {
			err = s.catchUp(ctx)
		}
		if err == nil && !s.caughtUp {
			err = s.emit(WatchUpdate{CaughtUp: true})
			s.caughtUp = true
		}
		if err == nil {
			err = s.followLive(ctx, live)
		}
		s.w.monitor.leave(live)
		if !errors.Is(err, errBehind) {
			return err
		}
		s.w.monitor.metrics.WatcherThrottled()
		replay = true // fell behind: catch up from the stream, then join again
	}
}

// errBehind ends followLive when the watcher's live buffer overflowed.
var errBehind = errors.New("watcher fell behind the live events")

// catchUp reads the stream from where the watcher is until it has caught up.
func (s *watchStream) catchUp(ctx context.Context) error {
	filters, err := s.spec.filters()
	if err != nil {
		return err
	}
	req := eventstore.ReadRequest{Filters: filters, Skipped: s.skipped}
	switch {
	case s.positioned:
		req.StartSequence = s.served + 1
	case s.spec.StartSequence != 0:
		req.StartSequence = s.spec.StartSequence
	case !s.spec.StartTime.IsZero():
		req.StartTime = s.spec.StartTime
	}
	last, err := s.w.store.Read(ctx, req, func(ev *ordersv1.OrderEvent) error {
		if !s.spec.matches(ev) {
			return nil
		}
		return s.event(ev)
	})
	if last > 0 {
		s.advance(last)
	}
	return err
}

// advance records that the watcher has been served up to seq.
func (s *watchStream) advance(seq uint64) {
	s.served = max(s.served, seq)
	s.positioned = true
}

// followLive sends live events until ctx ends, a send fails, or the
// watcher falls behind.
func (s *watchStream) followLive(ctx context.Context, live *liveWatcher) error {
	heartbeat := time.NewTimer(s.spec.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case e := <-live.events:
			if e.sequence() <= s.served {
				continue // already sent by the replay
			}
			if err := s.emit(WatchUpdate{Event: e.event, Skipped: e.skipped, live: e}); err != nil {
				return err
			}
			s.advance(e.sequence())
			heartbeat.Reset(s.spec.Heartbeat)
		case <-live.behind:
			return errBehind
		case <-heartbeat.C:
			if time.Since(s.lastSend) >= s.spec.Heartbeat {
				if err := s.emit(WatchUpdate{Heartbeat: true}); err != nil {
					return err
				}
			}
			heartbeat.Reset(s.spec.Heartbeat)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// skipped tells the watcher about a message that is not an order event,
// so that it can tell it from a gap in the sequences.
func (s *watchStream) skipped(u *eventstore.UnreadableError) error {
	if !s.spec.matchesUnreadable(u) {
		return nil
	}
	if err := s.emit(WatchUpdate{Skipped: u}); err != nil {
		return err
	}
	s.advance(u.Sequence)
	return nil
}

func (s *watchStream) event(ev *ordersv1.OrderEvent) error {
	if err := s.emit(WatchUpdate{Event: ev}); err != nil {
		return err
	}
	s.advance(ev.GetSequence())
	return nil
}

func (s *watchStream) emit(u WatchUpdate) error {
	if err := s.send(u); err != nil {
		return err
	}
	s.lastSend = time.Now()
	return nil
}
