package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersd/ordersd/eventstore"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/metrics"
	"github.com/ordersd/ordersd/telemetry"
)

// liveBuffer is how many events a watcher may have waiting in the live
// fan-out. A watcher whose buffer is full leaves the fan-out and catches up
// from the stream at its own pace (see Watch), so memory per watcher stays
// bounded and no watcher ever slows the others.
const liveBuffer = 256

// Monitor is the node's one push subscription on every order event (the
// seed's "monitor"), fanned out in process to every live watcher: each
// event is delivered by JetStream once per node and decoded once, whatever
// the number of watchers.
type Monitor struct {
	nc      *nats.Conn
	log     *slog.Logger
	metrics *metrics.Metrics

	mu       sync.Mutex // protects the fields below
	sub      *nats.Subscription
	last     uint64 // stream sequence of the last event fanned out
	watchers map[*liveWatcher]struct{}
	closed   bool
}

// NewMonitor returns a Monitor; it subscribes when the first watcher
// joins. m may be nil.
func NewMonitor(nc *nats.Conn, log *slog.Logger, m *metrics.Metrics) *Monitor {
	return &Monitor{nc: nc, log: log, metrics: m, watchers: make(map[*liveWatcher]struct{})}
}

// liveWatcher is one watcher's place in the fan-out.
type liveWatcher struct {
	match  func(*ordersv1.OrderEvent) bool
	events chan *ordersv1.OrderEvent // never closed
	behind chan struct{}             // closed when events overflowed and the watcher left the fan-out
}

// join adds a watcher to the fan-out. It returns the sequence of the last
// event fanned out before it joined: the watcher gets every matching event
// after it.
func (m *Monitor) join(match func(*ordersv1.OrderEvent) bool) (*liveWatcher, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, 0, fmt.Errorf("%w: monitor stopped", eventstore.ErrUnavailable)
	}
	if m.sub == nil {
		if err := m.subscribe(); err != nil {
			return nil, 0, err
		}
	}
	w := &liveWatcher{match: match, events: make(chan *ordersv1.OrderEvent, liveBuffer), behind: make(chan struct{})}
	m.watchers[w] = struct{}{}
	return w, m.last, nil
}

// leave removes a watcher from the fan-out.
func (m *Monitor) leave(w *liveWatcher) {
	m.mu.Lock()
	delete(m.watchers, w)
	m.mu.Unlock()
}

// Watchers is how many watchers are in the live fan-out.
func (m *Monitor) Watchers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.watchers)
}

// subscribe starts the push subscription: an ordered consumer on ORDERS.>
// from the next event on. Ordered consumers recreate themselves from the
// last sequence seen after a gap or a reconnect, so the fan-out never skips
// an event. m.mu must be held.
func (m *Monitor) subscribe() error {
	js, err := m.nc.JetStream()
	if err != nil {
		return eventstore.Classify(err)
	}
	sub, err := js.Subscribe(eventstore.StreamSubjects, m.fanOut,
		nats.BindStream(eventstore.StreamName), nats.OrderedConsumer(), nats.DeliverNew())
	if err != nil {
		return eventstore.Classify(err)
	}
	m.sub = sub
	m.log.Info("monitor subscribed", "subjects", eventstore.StreamSubjects)
	return nil
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
		m.log.Warn("monitor skips a message that is not an order event", "seq", meta.Sequence.Stream, "err", decodeErr)
		return
	}
	span.SetAttributes(attribute.Int("ordersd.watchers", len(m.watchers)))
	for w := range m.watchers {
		if !w.match(ev) {
			continue
		}
		select {
		case w.events <- ev:
		default:
			close(w.behind)
			delete(m.watchers, w)
		}
	}
}

// Close ends the subscription; watchers still joined see ErrUnavailable
// from their next join.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
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
