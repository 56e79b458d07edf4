package consumers

import (
	"context"
	"errors"
	"fmt"
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
	StartSequence uint64 // a sequence of the stream ORDERS (layout 2 only: ErrStartSequencePartitioned)
	StartTime     time.Time
	// ResumeAfter is a resume position as a client passed it back: the
	// watch goes on after it (see ResumePositions).
	ResumeAfter string
	Heartbeat   time.Duration
}

func (s WatchSpec) replays() bool {
	return s.ReplayAll || s.StartSequence != 0 || !s.StartTime.IsZero() || s.ResumeAfter != ""
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
// partition's stream: a replay reads only the events asked for.
func (s WatchSpec) filters(part eventstore.Partition) ([]string, error) {
	return part.FilterSubjects(eventstore.Filter{Statuses: s.Statuses, CustomerID: s.CustomerID, OrderID: s.OrderID})
}

// matchesLive reports whether an event or skip notice of the fan-out
// passes the spec's filters.
func (s WatchSpec) matchesLive(e *liveEvent) bool {
	if e.skipped != nil {
		return s.matchesUnreadable(e.monitor.layout.All()[e.part], e.skipped)
	}
	return s.matches(e.event)
}

// matchesUnreadable reports whether a message that is not an order event
// of partition part passes the spec's filters, by what its subject names:
// a message whose subject names no order passes only a spec without
// filters.
func (s WatchSpec) matchesUnreadable(part eventstore.Partition, u *eventstore.UnreadableError) bool {
	if u.OrderID == "" {
		return s.OrderID == "" && s.CustomerID == "" && len(s.Statuses) == 0
	}
	if (s.OrderID != "" && u.OrderID != s.OrderID) || (s.CustomerID != "" && u.CustomerID != s.CustomerID) {
		return false
	}
	if len(s.Statuses) == 0 {
		return true
	}
	status, _ := part.SubjectStatus(u.Subject)
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
	// ResumePosition is where the update leaves the watch: every event
	// asked for up to it has been sent. Set on every update.
	ResumePosition string
	live           *liveEvent // Event as the live fan-out shares it; nil for replayed events
	encoded        []byte     // live's WatchOrdersResponse, with ResumePosition
}

// EncodedResponse returns the WatchOrdersResponse of a live event in the
// wire format, encoded once for every watcher that gets it (the bytes are
// shared: never change them), or nil for an update that is not a live
// event, which the caller encodes itself.
func (u WatchUpdate) EncodedResponse() ([]byte, error) {
	return u.encoded, nil
}

// EventReader is what a Watcher needs of the event store
// (*eventstore.Store): reads of stored events, for replays and catch-up.
type EventReader interface {
	Read(ctx context.Context, req eventstore.ReadRequest, send func(*ordersv1.OrderEvent) error) (uint64, error)
	Locate(ctx context.Context, orderID string) (eventstore.OrderKey, error)
	Epochs(ctx context.Context) ([]eventstore.Epoch, error)
}

// ErrStartSequencePartitioned refuses a start_sequence in layout 3: it is
// a sequence of the one stream ORDERS, and means nothing over partitions
// whose sequences are each their own.
var ErrStartSequencePartitioned = errors.New("start_sequence is a sequence of the one stream ORDERS and means nothing over this deployment's partitions: " +
	"resume with resume_after (the resume_position of the last response handled), or start with replay_all or start_time")

// Watcher serves WatchOrders streams from the node's Monitor and, for
// replays and catch-up, from the stream itself.
type Watcher struct {
	monitor   *Monitor
	store     EventReader
	positions *ResumePositions
}

// NewWatcher returns a Watcher whose updates carry resume positions
// sealed, and opened again, by positions.
func NewWatcher(monitor *Monitor, store EventReader, positions *ResumePositions) *Watcher {
	return &Watcher{monitor: monitor, store: store, positions: positions}
}

// Watch streams the spec's events to send, in stream order, each once,
// until ctx ends or send fails. Every update carries the resume position
// after it; a watch that resumes after one (spec.ResumeAfter) goes on as
// one from start sequence = its sequence + 1 would, and one that is not
// this deployment's, or is of another epoch of the stream, ends it at once
// with ErrBadPosition or ErrStalePosition.
//
// It joins the live fan-out first and then, when there is something to
// replay, reads the stream from the start position until it has caught up;
// live events at or before the last one replayed are skipped, so the
// switch from replay to live neither loses nor repeats an event. If the
// watcher reads so slowly that its live buffer fills, it leaves the
// fan-out, catches up from the monitor's recent events at its own pace,
// sharing their read, decode and encode with every other watcher, and
// joins again. One that falls further behind than the recent events reach
// ends with a TooSlowError that says where to resume: it never slows the
// others, and costs the node no more than a watcher that keeps up. (A
// replay, or a monitor that subscribed anew, reads the stream for the
// watcher alone, as long as it takes to reach the recent events.)
func (w *Watcher) Watch(ctx context.Context, spec WatchSpec, send func(WatchUpdate) error) error {
	layout := w.monitor.layout
	if spec.StartSequence != 0 && layout.Partitioned() {
		return ErrStartSequencePartitioned
	}
	epochs, err := w.store.Epochs(ctx)
	if err != nil {
		return err
	}
	if len(epochs) != len(layout.All()) {
		return fmt.Errorf("the store has %d partitions, the monitor follows %d", len(epochs), len(layout.All()))
	}
	s := watchStream{w: w, spec: spec, send: send, lastSend: time.Now(), layout: layout, epochs: epochs, served: make([]uint64, len(epochs))}
	switch {
	case spec.ResumeAfter != "":
		pos, err := w.positions.OpenIn(layout, spec.ResumeAfter)
		if err != nil {
			return err
		}
		for k, one := range pos {
			if one.Epoch != epochs[k] {
				return ErrStalePosition
			}
			s.advance(k, one.Sequence)
		}
	case spec.StartSequence != 0:
		s.advance(0, spec.StartSequence-1)
	}
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
	return s.run(ctx)
}

// watchStream is the state of one WatchOrders stream.
type watchStream struct {
	w          *Watcher
	spec       WatchSpec
	send       func(WatchUpdate) error
	served     []uint64 // per partition, the stream sequence the watcher has been served up to
	positioned bool     // served is a position (else the spec's start is)
	caughtUp   bool     // caught_up has been sent
	// tick is the monitor's tick the watcher has followed the fan-out up
	// to: where it catches up in the recent events.
	tick uint64
	// atTail says that served was reached by following the live events
	// (live or from the recent ones), not by reading the stream.
	atTail   bool
	lastSend time.Time
	layout   eventstore.Layout
	epochs   []eventstore.Epoch // of every partition's stream, in every resume position
}

func (s *watchStream) run(ctx context.Context) error {
	replay := s.spec.replays()
	for {
		live, joinedAt, err := s.w.monitor.join(ctx, s.spec)
		if err != nil {
			return err
		}
		s.tick = joinedAt.tick
		if !replay && !s.caughtUp {
			s.advanceAll(joinedAt.last) // only what comes after the call began
		}
		if replay {
			if err = s.catchUp(ctx); err == nil {
				// The read went past every event fanned out before the
				// watcher joined: all it was asked for up to there is sent.
				s.advanceAll(joinedAt.last)
			}
		}
		if err == nil && !s.caughtUp {
			err = s.emit(WatchUpdate{CaughtUp: true})
			s.caughtUp = true
		}
		if err == nil {
			err = s.follow(ctx, live)
		}
		if !errors.Is(err, errRecentLost) {
			return err
		}
		replay = true // the recent events do not reach back: catch up from the stream, then join again
	}
}

// follow follows the live events from the fan-out place live, and the
// recent events whenever the watcher falls behind the live ones, until
// ctx ends, a send fails, or the watcher is further behind than the
// recent events reach.
func (s *watchStream) follow(ctx context.Context, live *liveWatcher) error {
	epoch := live.epoch
	for {
		err := s.followLive(ctx, live)
		s.w.monitor.leave(live)
		if !errors.Is(err, errBehind) {
			return err
		}
		s.w.monitor.metrics.WatcherThrottled()
		if live, err = s.catchUpRecent(ctx, epoch); err != nil {
			return err
		}
	}
}

// errBehind ends followLive when the watcher's live buffer overflowed.
var errBehind = errors.New("watcher fell behind the live events")

// recentBatch is how many recent events a watcher that fell behind takes
// at a time: as many as its live buffer holds.
const recentBatch = liveBuffer

// catchUpRecent sends the recent events after the watcher's position until
// none is left, and returns its new place in the live fan-out. A watcher
// that followed the live events and whose position has left the recent
// events ends with a TooSlowError; one that got there by reading the
// stream, or whose monitor subscribed anew (errRecentLost), catches up
// from the stream again.
func (s *watchStream) catchUpRecent(ctx context.Context, epoch uint64) (*liveWatcher, error) {
	batch := make([]*liveEvent, 0, recentBatch)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var (
			live     *liveWatcher
			joinedAt joined
			err      error
		)
		batch, live, joinedAt, err = s.w.monitor.recentAfter(s.spec, epoch, s.tick, batch[:0])
		switch {
		case errors.Is(err, errPassed) && s.atTail:
			s.w.monitor.metrics.WatcherTooSlow()
			tooSlow := &TooSlowError{ResumePosition: s.position()}
			if !s.layout.Partitioned() {
				tooSlow.Resume = s.served[0] + 1
			}
			return nil, tooSlow
		case errors.Is(err, errPassed):
			return nil, errRecentLost
		case err != nil:
			return nil, err
		case live != nil:
			s.advanceAll(joinedAt.last)
			s.tick = joinedAt.tick
			return live, nil
		}
		for _, e := range batch {
			s.tick = e.tick
			if e.sequence() <= s.served[e.part] {
				continue // already sent by a read of the stream
			}
			s.advanceLive(e)
			if s.spec.matchesLive(e) {
				if err := s.emit(WatchUpdate{Event: e.event, Skipped: e.skipped, live: e}); err != nil {
					return nil, err
				}
			}
		}
		s.atTail = true
		clear(batch) // hold no events while waiting for the next batch
	}
}

// catchUp reads the streams from where the watcher is until it has
// caught up with each (see catchUpMerged).
func (s *watchStream) catchUp(ctx context.Context) error {
	parts := s.layout.All()
	if s.spec.OrderID != "" {
		parts = []eventstore.Partition{s.layout.Of(s.spec.OrderID)} // the only one holding the order
	}
	if len(parts) == 1 {
		return s.catchUpPartition(ctx, parts[0], s.event, s.skipped)
	}
	return s.catchUpMerged(ctx, parts)
}

// readRequest is the read of part that goes on from where the watcher is.
func (s *watchStream) readRequest(part eventstore.Partition) (eventstore.ReadRequest, error) {
	filters, err := s.spec.filters(part)
	if err != nil {
		return eventstore.ReadRequest{}, err
	}
	req := eventstore.ReadRequest{Partition: part, Filters: filters}
	switch {
	case s.positioned: // a start sequence or resume position is a position too
		req.StartSequence = s.served[part.Number] + 1
	case !s.spec.StartTime.IsZero():
		req.StartTime = s.spec.StartTime
	}
	return req, nil
}

// catchUpPartition reads part's stream from where the watcher is until it
// has caught up, handing its events and skipped messages on.
func (s *watchStream) catchUpPartition(ctx context.Context, part eventstore.Partition,
	event func(eventstore.Partition, *ordersv1.OrderEvent) error, skipped func(eventstore.Partition, *eventstore.UnreadableError) error) error {
	req, err := s.readRequest(part)
	if err != nil {
		return err
	}
	req.Skipped = func(u *eventstore.UnreadableError) error { return skipped(part, u) }
	s.atTail = false
	last, err := s.w.store.Read(ctx, req, func(ev *ordersv1.OrderEvent) error {
		if !s.spec.matches(ev) {
			return nil
		}
		return event(part, ev)
	})
	if last > 0 {
		s.advance(part.Number, last)
	}
	return err
}

// advance records that the watcher has been served up to seq in the
// partition numbered k.
func (s *watchStream) advance(k int, seq uint64) {
	s.served[k] = max(s.served[k], seq)
	s.positioned = true
}

// advanceAll records that the watcher has been served up to last, one
// sequence per partition.
func (s *watchStream) advanceAll(last []uint64) {
	for k, seq := range last {
		s.advance(k, seq)
	}
}

// advanceLive records that the watcher has been served up to a message
// of the fan-out: in layout 3 up to every partition's sequence after it.
func (s *watchStream) advanceLive(e *liveEvent) {
	if e.after != nil {
		s.advanceAll(e.after)
		return
	}
	s.advance(e.part, e.sequence())
}

// position is the resume position the watcher has reached.
func (s *watchStream) position() string {
	pos := make([]Position, len(s.epochs))
	for k := range pos {
		pos[k] = Position{Epoch: s.epochs[k], Sequence: s.served[k]}
	}
	return s.w.positions.SealIn(s.layout, pos)
}

// followLive sends live events until ctx ends, a send fails, or the
// watcher falls behind.
func (s *watchStream) followLive(ctx context.Context, live *liveWatcher) error {
	heartbeat := time.NewTimer(s.spec.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case e := <-live.events:
			s.tick = e.tick
			if e.sequence() <= s.served[e.part] {
				continue // already sent by the replay
			}
			s.advanceLive(e)
			if err := s.emit(WatchUpdate{Event: e.event, Skipped: e.skipped, live: e}); err != nil {
				return err
			}
			s.atTail = true
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
func (s *watchStream) skipped(part eventstore.Partition, u *eventstore.UnreadableError) error {
	if !s.spec.matchesUnreadable(part, u) {
		return nil
	}
	s.advance(part.Number, u.Sequence)
	return s.emit(WatchUpdate{Skipped: u})
}

func (s *watchStream) event(part eventstore.Partition, ev *ordersv1.OrderEvent) error {
	s.advance(part.Number, ev.GetSequence())
	return s.emit(WatchUpdate{Event: ev})
}

// emit sends u with the resume position the watcher has reached, which the
// caller has advanced past u's event.
func (s *watchStream) emit(u WatchUpdate) error {
	if u.live != nil && (u.live.after == nil || slices.Equal(u.live.after, s.served)) {
		// Where every watcher that follows the fan-out stands: shared.
		var err error
		if u.encoded, u.ResumePosition, err = u.live.encoded(s.w.positions, s.epochs); err != nil {
			return err
		}
	} else {
		u.ResumePosition = s.position()
	}
	if err := s.send(u); err != nil {
		return err
	}
	s.lastSend = time.Now()
	return nil
}
