// Package metrics holds ordersd's own Prometheus metrics. Every method is
// safe on a nil *Metrics (it does nothing), so packages record without
// checking whether metrics are on.
package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the series ordersd records besides the gRPC server's.
type Metrics struct {
	publishDuration *prometheus.HistogramVec
	publishErrors   *prometheus.CounterVec
	inFlight        *prometheus.GaugeVec
	deliveries      *prometheus.CounterVec
	redeliveries    *prometheus.CounterVec
	watchers        prometheus.Gauge
	watchersBehind  prometheus.Counter
	watchersTooSlow prometheus.Counter
	watchEvents     prometheus.Counter
	natsConnected   prometheus.Gauge
	ready           prometheus.Gauge
	deadLetterRec   prometheus.Gauge
	deadLetters     *deadLetterCollector
	unreadable      *prometheus.CounterVec
	streamLeader    *prometheus.GaugeVec

	leadersMu sync.Mutex        // protects leaders
	leaders   map[string]string // the server of each series of streamLeader, by stream
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ordersd_publish_duration_seconds", Help: "Time from publishing an order event to JetStream's ack, by event type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"event"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordersd_publish_errors_total", Help: "Publishes of order events that JetStream refused or did not answer, by reason.",
		}, []string{"reason"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ordersd_consumer_in_flight", Help: "Events delivered by ConsumeOrders on this node and not yet acked, by consumer.",
		}, []string{"consumer"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordersd_consumer_deliveries_total", Help: "Events delivered by ConsumeOrders on this node, by consumer.",
		}, []string{"consumer"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordersd_consumer_redeliveries_total", Help: "Events delivered by ConsumeOrders again (attempt 2 or more), by consumer.",
		}, []string{"consumer"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordersd_watchers", Help: "WatchOrders streams open on this node.",
		}),
		watchersBehind: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ordersd_watchers_throttled_total", Help: "Times a watcher fell behind the live events and caught up from the node's recent events (no event is dropped).",
		}),
		watchersTooSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ordersd_watchers_too_slow_total", Help: "Watches ended because their reader fell further behind the live events than the node keeps (the client resumes from the sequence it was given).",
		}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ordersd_watch_events_total", Help: "Events the node's monitor subscription received and fanned out.",
		}),
		natsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordersd_nats_connected", Help: "1 while the NATS connection is up.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordersd_jetstream_ready", Help: "1 while JetStream answers and the stream ORDERS exists (the readiness of the node).",
		}),
		deadLetterRec: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordersd_dead_letters_recorded", Help: "1 while dead letters are recorded in ORDERS_DEAD_LETTERS; 0 while they cannot be (another stream holds their subjects: the log says which) or the node is not ready.",
		}),
		unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordersd_unreadable_events_total", Help: "Stored messages this node found not to be order events (another publisher's, or corrupt), by stream; each counted once, however often it is read.",
		}, []string{"stream"}),
		streamLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ordersd_stream_leader", Help: "1 for the server that leads each of ordersd's streams, as JetStream's stream info last told this node (one series per stream; none while a stream has no leader or cannot be read).",
		}, []string{"stream", "server"}),
		leaders: map[string]string{},
	}
	m.deadLetters = &deadLetterCollector{desc: prometheus.NewDesc("ordersd_dead_letters",
		"Dead letters stored in ORDERS_DEAD_LETTERS, by consumer and reason (max_deliveries, terminated): read from JetStream at each scrape, so every node reports the deployment's count.",
		[]string{"consumer", "reason"}, nil)}
	reg.MustRegister(m.publishDuration, m.publishErrors, m.inFlight, m.deliveries, m.redeliveries,
		m.watchers, m.watchersBehind, m.watchersTooSlow, m.watchEvents, m.natsConnected, m.ready, m.deadLetterRec, m.deadLetters, m.unreadable, m.streamLeader)
	return m
}

// DeadLetterCount is the number of stored dead letters of one consumer
// for one reason.
type DeadLetterCount struct {
	Consumer, Reason string
	Count            uint64
}

// deadLetterScrapeTimeout bounds the JetStream read of one scrape.
const deadLetterScrapeTimeout = 2 * time.Second

// deadLetterCollector reports ordersd_dead_letters from JetStream at
// scrape time: the dead letters are JetStream's record, written while no
// node may run, so a count kept in a node's memory would miss some.
type deadLetterCollector struct {
	desc   *prometheus.Desc
	source atomic.Pointer[func(context.Context) ([]DeadLetterCount, error)]
}

// Describe implements prometheus.Collector.
func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. While JetStream cannot be read
// the series are left out rather than reported as zero.
func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	source := c.source.Load()
	if source == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterScrapeTimeout)
	defer cancel()
	counts, err := (*source)(ctx)
	if err != nil {
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.Count), n.Consumer, n.Reason)
	}
}

// CountDeadLetters sets where ordersd_dead_letters is read from.
func (m *Metrics) CountDeadLetters(source func(context.Context) ([]DeadLetterCount, error)) {
	if m == nil {
		return
	}
	m.deadLetters.source.Store(&source)
}

// Published records one publish: its event type, how long JetStream took
// to answer, and the reason it failed ("" when it did not).
func (m *Metrics) Published(event string, took time.Duration, failure string) {
	if m == nil {
		return
	}
	if failure != "" {
		m.publishErrors.WithLabelValues(failure).Inc()
		return
	}
	m.publishDuration.WithLabelValues(event).Observe(took.Seconds())
}

// Delivered records a ConsumeOrders delivery of the given attempt.
func (m *Metrics) Delivered(consumer string, attempt uint64) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(consumer).Inc()
	if attempt > 1 {
		m.redeliveries.WithLabelValues(consumer).Inc()
	}
}

// InFlight moves the count of unacked deliveries of a consumer by delta.
func (m *Metrics) InFlight(consumer string, delta int) {
	if m == nil || delta == 0 {
		return
	}
	m.inFlight.WithLabelValues(consumer).Add(float64(delta))
}

// Watching moves the count of open watchers by delta.
func (m *Metrics) Watching(delta int) {
	if m == nil {
		return
	}
	m.watchers.Add(float64(delta))
}

// WatcherThrottled records a watcher that fell behind.
func (m *Metrics) WatcherThrottled() {
	if m == nil {
		return
	}
	m.watchersBehind.Inc()
}

// WatcherTooSlow records a watch ended because its reader fell too far
// behind the live events.
func (m *Metrics) WatcherTooSlow() {
	if m == nil {
		return
	}
	m.watchersTooSlow.Inc()
}

// WatchEvent records an event fanned out by the monitor.
func (m *Metrics) WatchEvent() {
	if m == nil {
		return
	}
	m.watchEvents.Inc()
}

// UnreadableEvent records a stored message of stream that is not an order
// event, the first time this node meets it.
func (m *Metrics) UnreadableEvent(stream string) {
	if m == nil {
		return
	}
	m.unreadable.WithLabelValues(stream).Inc()
}

// State records the NATS connection and JetStream readiness.
func (m *Metrics) State(connected, ready bool) {
	if m == nil {
		return
	}
	m.natsConnected.Set(b2f(connected))
	m.ready.Set(b2f(ready))
}

// DeadLettersRecorded records whether dead letters are recorded.
func (m *Metrics) DeadLettersRecorded(recorded bool) {
	if m == nil {
		return
	}
	m.deadLetterRec.Set(b2f(recorded))
}

// StreamLeaders records the leader of each stream (stream name → server
// name): each stream's series names its server, and the series of a
// stream that changed leader, or is not in leaders, is removed.
func (m *Metrics) StreamLeaders(leaders map[string]string) {
	if m == nil {
		return
	}
	m.leadersMu.Lock()
	defer m.leadersMu.Unlock()
	for stream, server := range m.leaders {
		if leaders[stream] != server {
			m.streamLeader.DeleteLabelValues(stream, server)
			delete(m.leaders, stream)
		}
	}
	for stream, server := range leaders {
		if server == "" {
			continue
		}
		m.streamLeader.WithLabelValues(stream, server).Set(1)
		m.leaders[stream] = server
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
