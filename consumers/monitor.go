package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// fan-out and catches up from the stream at its own pace (see Watch), so
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
// for WatchOrders once, whatever the number of watchers. Watchers of one
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
type Monitor struct {
	nc      *nats.Conn
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

	mu         sync.Mutex // protects the fields below
	sub        *nats.Subscription
	last       uint64                    // stream sequence of the last event fanned out
	watchers   map[*liveWatcher]struct{} // every watcher in the fan-out
	anyone     watcherSet                // the watchers of every customer
	byCustomer map[string]watcherSet     // the watchers of one customer, by customer id
	closed     bool
}

// watcherSet is a set of watchers of the fan-out.
type watcherSet map[*liveWatcher]struct{}

// NewMonitor returns a Monitor; it subscribes when the first watcher
// joins, waiting at most timeout (--nats-timeout) for each JetStream
// request of that. m may be nil.
func NewMonitor(nc *nats.Conn, timeout time.Duration, log *slog.Logger, m *metrics.Metrics) *Monitor {
	return &Monitor{nc: nc, timeout: timeout, log: log, metrics: m, starting: make(chan struct{}, 1), stopped: make(chan struct{}),
		watchers: make(map[*liveWatcher]struct{}), anyone: make(watcherSet), byCustomer: make(map[string]watcherSet)}
}

// liveWatcher is one watcher's place in the fan-out.
type liveWatcher struct {
	spec   WatchSpec
	events chan *liveEvent // never closed
	behind chan struct{}   // closed when events overflowed and the watcher left the fan-out
}

// join adds a watcher of spec's events to the fan-out. It returns the
// sequence of the last event fanned out before it joined: the watcher gets
// every matching event after it.
func (m *Monitor) join(ctx context.Context, spec WatchSpec) (*liveWatcher, uint64, error) {
	if err := m.subscribed(ctx); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, 0, fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	}
	size := liveBuffer
	if spec.CustomerID != "" {
		size = liveBufferCustomer
	}
	w := &liveWatcher{spec: spec, events: make(chan *liveEvent, size), behind: make(chan struct{})}
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
	return w, m.last, nil
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

// subscribed makes sure the push subscription runs, starting it on first
// use: an ordered consumer on ORDERS.> from the event after the stream's
// current last one, so that m.last is exact from the start (a watcher
// asking only for new events never gets older ones). Ordered consumers
// recreate themselves from the last sequence seen after a gap or a
// reconnect, so the fan-out never skips an event. Starting it waits for
// JetStream outside m.mu, so the fan-out and other watchers go on; calls
// that find NATS disconnected fail at once.
func (m *Monitor) subscribed(ctx context.Context) error {
	select {
	case m.starting <- struct{}{}:
		defer func() { <-m.starting }()
	case <-ctx.Done():
		return ctx.Err()
	}
	m.mu.Lock()
	running, closed := m.sub != nil, m.closed
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
	info, err := js.StreamInfo(eventstore.StreamName)
	if err != nil {
		return eventstore.Classify(err)
	}
	m.mu.Lock()
	m.last = info.State.LastSeq // before the first event can arrive
	m.mu.Unlock()
	sub, err := js.Subscribe(eventstore.StreamSubjects, m.fanOut, nats.BindStream(eventstore.StreamName),
		nats.OrderedConsumer(), nats.StartSequence(info.State.LastSeq+1),
		nats.InactiveThreshold(monitorKeepAlive), nats.IdleHeartbeat(monitorHeartbeat))
	if err != nil {
		return eventstore.Classify(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = sub.Unsubscribe()
		return fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	}
	m.sub = sub
	go m.whenLost(sub, sub.StatusChanged(nats.SubscriptionClosed))
	m.log.Info("monitor subscribed", "subjects", eventstore.StreamSubjects, "from_sequence", info.State.LastSeq+1)
	return nil
}

// whenLost handles an end of the subscription the monitor did not ask
// for: nats.go gives up on an ordered consumer when recreating it fails
// with an error it does not retry (JetStream answering 503 during an
// election), and the fan-out would then send heartbeats but no events.
// Every watcher catches up from the stream on its own instead, as a slow
// one does, and rejoins; the first rejoin subscribes again.
func (m *Monitor) whenLost(sub *nats.Subscription, ended <-chan nats.SubStatus) {
	select {
	case <-ended:
	case <-m.stopped: // closing the connection ends subscriptions without a status
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.sub != sub {
		return
	}
	m.sub = nil
	m.log.Warn("monitor subscription ended; watchers catch up from the stream, then it starts again", "last_seq", m.last)
	for w := range m.watchers {
		close(w.behind)
		m.remove(w)
	}
}

// fanOut hands one event to every watcher it matches, without ever
// blocking: a watcher with a full buffer is told it is behind and removed.
func (m *Monitor) fanOut(msg *nats.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	ev, decodeErr := eventstore.DecodeEvent(msg.Subject, msg.Header, msg.Data, meta.Sequence.Stream, meta.Timestamp)
	m.metrics.WatchEvent()
	_, span := telemetry.Tracer().Start(telemetry.Extract(context.Background(), msg.Header), "WatchOrders fan-out",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream))))
	defer span.End()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = meta.Sequence.Stream
	if decodeErr != nil {
		m.skip(decodeErr)
		return
	}
	span.SetAttributes(attribute.Int("ordersd.watchers", len(m.watchers)))
	shared := &liveEvent{event: ev, monitor: m}
	m.deliver(m.anyone, shared)
	m.deliver(m.byCustomer[ev.GetOrder().GetCustomerId()], shared)
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
	if m.sub == nil {
		return nil
	}
	err := m.sub.Unsubscribe()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		err = nil
	}
	return err
}
