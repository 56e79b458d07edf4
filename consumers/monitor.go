package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/telemetry"
)

// liveBuffer is how many events a watcher of every customer may have
// waiting in the live fan-out. A watcher whose buffer is full leaves the
// fan-out and catches up from the monitor's recent events (see Watch), so
// memory per watcher stays bounded and no watcher ever slows the others.
// A watcher of one customer gets a small share of the events and has a
// smaller buffer: with 10,000 of them the 2 KiB of a 256-event buffer was
// the largest part of their memory (ordersbench), and a burst of one
// customer's events that overflows it costs only a catch-up read of that
// customer's subjects.
const (
	liveBuffer         = 256
	liveBufferCustomer = 32
)

// The monitor's consumer outlives a cut in the NATS connection: JetStream
// deletes an ephemeral consumer that nobody listens to after 5s by default,
// and nats.go recreates an ordered consumer only after two idle heartbeats
// go missing (5s each by default), so after a cut of more than 5s watchers
// would get heartbeats but no events for up to 10s once NATS is back. Kept
// for monitorKeepAlive, the consumer
// goes on at once when the connection comes back; after a longer cut, or a
// server restart that loses it, it is recreated within two
// monitorHeartbeats.
const (
	monitorKeepAlive = time.Minute
	monitorHeartbeat = time.Second
)

// Monitor is the node's one push subscription on every order event (the
// seed's "monitor"), fanned out in process to every live watcher: each
// event is delivered by JetStream once per node, decoded once and encoded
// for WatchOrders once, whatever the number of watchers, and whether they
// follow it live or catch up on it from the recent events. Watchers of one
// customer are indexed by it, so an event is matched only against the
// watchers of its customer and those of every customer.
//
// It uses nats.go's legacy JetStream API (nc.JetStream, js.Subscribe with
// nats.OrderedConsumer) on purpose: the jetstream package (v1.55) has no
// ordered push consumer. Its OrderedConsumer is a pull consumer (pull
// requests with client-side heartbeats, not a server-pushed flow with
// IdleHeartbeat), and its PushConsumer does not reset itself from the last
// sequence seen after a gap or a lost consumer. Moving would replace the
// server-pushed flow (one ordered consumer per node, fanned out) and the
// recovery whenLost provides, so the legacy API stays until jetstream
// offers an ordered push consumer.
//
// In layout 3 it runs one such subscription per partition stream, fanned
// out together: across partitions in the order events arrive, per order in
// its stream's order (an order is in one partition).
type Monitor struct {
	nc      *nats.Conn
	layout  eventstore.Layout
	timeout time.Duration // bounds each JetStream request of subscribing
	log     *slog.Logger
	metrics *metrics.Metrics
	// unreadable reports messages that are not order events (see
	// ReportUnreadableTo); nil: each is logged as it comes.
	unreadable *eventstore.Unreadables

	starting chan struct{} // one at a time starts the subscription (see subscribed)
	stopped  chan struct{} // closed by Close

	// responsesEncoded counts the WatchOrdersResponses encoded for live
	// events: one per event that any watcher got, however many got it.
	responsesEncoded atomic.Uint64

	mu         sync.Mutex                // protects the fields below
	subs       []*nats.Subscription      // one per partition; nil while not subscribed
	last       []uint64                  // per partition, the stream sequence of the last message fanned out
	tick       uint64                    // how many messages have been fanned out: the order of m.recent
	watchers   map[*liveWatcher]struct{} // every watcher in the fan-out
	anyone     watcherSet                // the watchers of every customer
	byCustomer map[string]watcherSet     // the watchers of one customer, by customer id
	recent     recentEvents              // the last events fanned out, for watchers that fell behind
	closed     bool
}

// watcherSet is a set of watchers of the fan-out.
type watcherSet map[*liveWatcher]struct{}

// NewMonitor returns a Monitor; it subscribes when the first watcher
// joins, waiting at most timeout (--nats-timeout) for each JetStream
// request of that. m may be nil.
// It follows the partitions of layout (one stream in layout 2).
func NewMonitor(nc *nats.Conn, layout eventstore.Layout, timeout time.Duration, log *slog.Logger, m *metrics.Metrics) *Monitor {
	return &Monitor{nc: nc, layout: layout, timeout: timeout, log: log, metrics: m, starting: make(chan struct{}, 1), stopped: make(chan struct{}),
		last:     make([]uint64, len(layout.All())),
		watchers: make(map[*liveWatcher]struct{}), anyone: make(watcherSet), byCustomer: make(map[string]watcherSet)}
}

// Layout is the layout whose partitions the monitor follows.
func (m *Monitor) Layout() eventstore.Layout { return m.layout }

// joined is where a watcher joined the fan-out: the sequence of the last
// message fanned out of each partition before it, and the monitor's tick.
type joined struct {
	last []uint64
	tick uint64
}

// joinedNow is where a watcher joining now joins; m.mu is held.
func (m *Monitor) joinedNow() joined {
	return joined{last: slices.Clone(m.last), tick: m.tick}
}

// liveWatcher is one watcher's place in the fan-out.
type liveWatcher struct {
	spec   WatchSpec
	events chan *liveEvent // never closed
	behind chan struct{}   // closed when events overflowed and the watcher left the fan-out
	epoch  uint64          // of m.recent when it joined
}

// join adds a watcher of spec's events to the fan-out. It returns the
// sequences of the last events fanned out before it joined: the watcher
// gets every matching event after them.
func (m *Monitor) join(ctx context.Context, spec WatchSpec) (*liveWatcher, joined, error) {
	if err := m.subscribed(ctx); err != nil {
		return nil, joined{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, joined{}, fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	}
	return m.add(spec), m.joinedNow(), nil
}

// add puts a new watcher of spec's events into the fan-out; m.mu is held.
func (m *Monitor) add(spec WatchSpec) *liveWatcher {
	size := liveBuffer
	if spec.CustomerID != "" {
		size = liveBufferCustomer
	}
	w := &liveWatcher{spec: spec, events: make(chan *liveEvent, size), behind: make(chan struct{}), epoch: m.recent.epoch}
	m.watchers[w] = struct{}{}
	if spec.CustomerID == "" {
		m.anyone[w] = struct{}{}
	} else {
		set := m.byCustomer[spec.CustomerID]
		if set == nil {
			set = make(watcherSet)
			m.byCustomer[spec.CustomerID] = set
		}
		set[w] = struct{}{}
	}
	return w
}

// errRecentLost says that a watcher's position is not in m.recent for a
// reason of the monitor's (it subscribed anew, or is subscribing): it
// catches up from the stream instead.
var errRecentLost = errors.New("the monitor's recent events no longer cover the watcher's position")

// errPassed says that the events after a watcher's position have already
// left m.recent.
var errPassed = errors.New("the watcher's position has left the monitor's recent events")

// recentAfter is how a watcher that fell behind catches up: it appends to
// into the recent events after tick (as many as into has room for),
// which m.recent held since the watcher's last place in the fan-out (of
// that epoch). When none is left to catch up, it puts the watcher back
// into the fan-out instead, atomically with the fan-out, and returns its
// new place and where it joined.
func (m *Monitor) recentAfter(spec WatchSpec, epoch, tick uint64, into []*liveEvent) ([]*liveEvent, *liveWatcher, joined, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return into, nil, joined{}, fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	case m.subs == nil || m.recent.epoch != epoch:
		return into, nil, joined{}, errRecentLost
	}
	batch, ok := m.recent.after(tick, into)
	switch {
	case !ok:
		return batch, nil, joined{}, errPassed
	case len(batch) > 0:
		return batch, nil, joined{}, nil
	}
	return batch, m.add(spec), m.joinedNow(), nil
}

// RecentHeld is how many recent events the monitor holds for watchers
// that fell behind; never more than RecentCapacity.
func (m *Monitor) RecentHeld() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recent.held()
}

// leave removes a watcher from the fan-out.
func (m *Monitor) leave(w *liveWatcher) {
	m.mu.Lock()
	m.remove(w)
	m.mu.Unlock()
}

// remove takes w out of the fan-out; m.mu is held.
func (m *Monitor) remove(w *liveWatcher) {
	delete(m.watchers, w)
	if w.spec.CustomerID == "" {
		delete(m.anyone, w)
		return
	}
	set := m.byCustomer[w.spec.CustomerID]
	delete(set, w)
	if len(set) == 0 {
		delete(m.byCustomer, w.spec.CustomerID)
	}
}

// Watchers is how many watchers are in the live fan-out.
func (m *Monitor) Watchers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.watchers)
}

// subscribed makes sure the push subscriptions run, starting them on
// first use: an ordered consumer on each partition's events (ORDERS.> in
// layout 2) from the message after the stream's current last one, so
// that m.last is exact from the start (a watcher asking only for new
// events never gets older ones). Ordered consumers recreate themselves
// from the last sequence seen after a gap or a reconnect, so the fan-out
// never skips an event. Starting them waits for JetStream outside m.mu,
// so the fan-out and other watchers go on; calls that find NATS
// disconnected fail at once.
func (m *Monitor) subscribed(ctx context.Context) error {
	select {
	case m.starting <- struct{}{}:
		defer func() { <-m.starting }()
	case <-ctx.Done():
		return ctx.Err()
	}
	m.mu.Lock()
	running, closed := m.subs != nil, m.closed
	m.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	case running:
		return nil
	case !m.nc.IsConnected():
		return fmt.Errorf("%w: not connected to NATS", eventstore.ErrUnavailable)
	}
	js, err := m.nc.JetStream(nats.MaxWait(m.timeout))
	if err != nil {
		return eventstore.Classify(err)
	}
	parts := m.layout.All()
	last := make([]uint64, len(parts))
	for k, part := range parts {
		info, err := js.StreamInfo(part.Stream())
		if err != nil {
			return eventstore.Classify(err)
		}
		last[k] = info.State.LastSeq
	}
	m.mu.Lock()
	copy(m.last, last) // before the first event can arrive
	m.recent.restart(m.tick)
	m.mu.Unlock()
	subs := make([]*nats.Subscription, 0, len(parts))
	unsubscribe := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	for k, part := range parts {
		sub, err := js.Subscribe(part.Subjects(), func(msg *nats.Msg) { m.fanOut(part, msg) }, nats.BindStream(part.Stream()),
			nats.OrderedConsumer(), nats.StartSequence(last[k]+1),
			nats.InactiveThreshold(monitorKeepAlive), nats.IdleHeartbeat(monitorHeartbeat))
		if err != nil {
			unsubscribe()
			return eventstore.Classify(err)
		}
		subs = append(subs, sub)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		unsubscribe()
		return fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	}
	m.subs = subs
	for k, sub := range subs {
		go m.whenLost(sub, sub.StatusChanged(nats.SubscriptionClosed))
		m.log.Info("monitor subscribed", "stream", parts[k].Stream(), "subjects", parts[k].Subjects(), "from_sequence", last[k]+1)
	}
	return nil
}

// whenLost handles an end of a subscription the monitor did not ask
// for: nats.go gives up on an ordered consumer when recreating it fails
// with an error it does not retry (JetStream answering 503 during an
// election), and the fan-out would then send heartbeats but no events.
// The monitor ends its other subscriptions too, and every watcher catches
// up from the streams on its own instead, as a slow one does, and
// rejoins; the first rejoin subscribes again.
func (m *Monitor) whenLost(sub *nats.Subscription, ended <-chan nats.SubStatus) {
	select {
	case <-ended:
	case <-m.stopped: // closing the connection ends subscriptions without a status
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !slices.Contains(m.subs, sub) {
		return
	}
	for _, other := range m.subs {
		if other != sub {
			_ = other.Unsubscribe()
		}
	}
	m.subs = nil
	m.log.Warn("monitor subscription ended; watchers catch up from the stream, then it starts again", "subject", sub.Subject, "last_seq", m.last)
	for w := range m.watchers {
		close(w.behind)
		m.remove(w)
	}
}

// fanOut hands one event to every watcher it matches, without ever
// blocking: a watcher with a full buffer is told it is behind and removed.
func (m *Monitor) fanOut(part eventstore.Partition, msg *nats.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	ev, decodeErr := part.DecodeEvent(msg.Subject, msg.Header, msg.Data, meta.Sequence.Stream, meta.Timestamp)
	m.metrics.WatchEvent()
	_, span := telemetry.Tracer().Start(telemetry.Extract(context.Background(), msg.Header), "WatchOrders fan-out",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream))))
	defer span.End()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[part.Number] = meta.Sequence.Stream
	m.tick++
	if decodeErr != nil {
		m.skip(part, decodeErr)
		return
	}
	span.SetAttributes(attribute.Int("ordersd.watchers", len(m.watchers)))
	shared := m.shared(part)
	shared.event = ev
	m.recent.add(shared)
	m.deliver(m.anyone, shared)
	m.deliver(m.byCustomer[ev.GetOrder().GetCustomerId()], shared)
}

// shared is the fan-out's entry for the message of part just counted;
// m.mu is held.
func (m *Monitor) shared(part eventstore.Partition) *liveEvent {
	e := &liveEvent{monitor: m, part: part.Number, tick: m.tick}
	if m.layout.Partitioned() {
		e.after = slices.Clone(m.last)
	}
	return e
}

// deliver hands e to the watchers of set that it matches; m.mu is held.
func (m *Monitor) deliver(set watcherSet, e *liveEvent) {
	for w := range set {
		if !w.spec.matches(e.event) {
			continue
		}
		select {
		case w.events <- e:
		default:
			close(w.behind)
			m.remove(w)
		}
	}
}

// Close ends the subscription; watchers still joined see ErrUnavailable
// from their next join.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		close(m.stopped)
	}
	m.closed = true
	var errs []error
	for _, sub := range m.subs {
		err := sub.Unsubscribe()
		if !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
