package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSeriesRecordWhatHappened(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)

	m.Published("created", 3*time.Millisecond, "")
	m.Published("created", time.Millisecond, "")
	m.Published("approved", 0, "timeout") // a failure counts as an error, not as a duration
	m.Delivered("warehouse", 1)
	m.Delivered("warehouse", 2)
	m.Delivered("warehouse", 3)
	m.InFlight("warehouse", 3)
	m.InFlight("warehouse", -1)
	m.Watching(2)
	m.Watching(-1)
	m.WatcherThrottled()
	m.WatcherTooSlow()
	m.WatchEvent()
	m.WatchEvent()
	m.State(true, false)

	want := `
# HELP ordersd_consumer_deliveries_total Events delivered by ConsumeOrders on this node, by consumer.
# TYPE ordersd_consumer_deliveries_total counter
ordersd_consumer_deliveries_total{consumer="warehouse"} 3
# HELP ordersd_consumer_in_flight Events delivered by ConsumeOrders on this node and not yet acked, by consumer.
# TYPE ordersd_consumer_in_flight gauge
ordersd_consumer_in_flight{consumer="warehouse"} 2
# HELP ordersd_consumer_redeliveries_total Events delivered by ConsumeOrders again (attempt 2 or more), by consumer.
# TYPE ordersd_consumer_redeliveries_total counter
ordersd_consumer_redeliveries_total{consumer="warehouse"} 2
# HELP ordersd_jetstream_ready 1 while JetStream answers and the stream ORDERS exists (the readiness of the node).
# TYPE ordersd_jetstream_ready gauge
ordersd_jetstream_ready 0
# HELP ordersd_nats_connected 1 while the NATS connection is up.
# TYPE ordersd_nats_connected gauge
ordersd_nats_connected 1
# HELP ordersd_publish_errors_total Publishes of order events that JetStream refused or did not answer, by reason.
# TYPE ordersd_publish_errors_total counter
ordersd_publish_errors_total{reason="timeout"} 1
# HELP ordersd_watch_events_total Events the node's monitor subscription received and fanned out.
# TYPE ordersd_watch_events_total counter
ordersd_watch_events_total 2
# HELP ordersd_watchers WatchOrders streams open on this node.
# TYPE ordersd_watchers gauge
ordersd_watchers 1
# HELP ordersd_watchers_throttled_total Times a watcher fell behind the live events and caught up from the node's recent events (no event is dropped).
# TYPE ordersd_watchers_throttled_total counter
ordersd_watchers_throttled_total 1
# HELP ordersd_watchers_too_slow_total Watches ended because their reader fell further behind the live events than the node keeps (the client resumes from the sequence it was given).
# TYPE ordersd_watchers_too_slow_total counter
ordersd_watchers_too_slow_total 1
`
	names := []string{
		"ordersd_consumer_deliveries_total", "ordersd_consumer_in_flight", "ordersd_consumer_redeliveries_total",
		"ordersd_jetstream_ready", "ordersd_nats_connected", "ordersd_publish_errors_total",
		"ordersd_watch_events_total", "ordersd_watchers", "ordersd_watchers_throttled_total", "ordersd_watchers_too_slow_total",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Durations are observed per event type; failed publishes are not.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	observed := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "ordersd_publish_duration_seconds" {
			continue
		}
		for _, metric := range f.GetMetric() {
			observed[metric.GetLabel()[0].GetValue()] = metric.GetHistogram().GetSampleCount()
		}
	}
	if len(observed) != 1 || observed["created"] != 2 {
		t.Errorf("publish durations observed %v, want created: 2 and nothing for the failed approval", observed)
	}
}

// Packages record without checking whether metrics are on.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Published("created", time.Millisecond, "")
	m.Published("created", 0, "timeout")
	m.Delivered("c", 2)
	m.InFlight("c", 1)
	m.Watching(1)
	m.WatcherThrottled()
	m.WatcherTooSlow()
	m.WatchEvent()
	m.State(true, true)
	m.StreamLeaders(map[string]string{"ORDERS": "n1"})
}

// Each stream has one series, naming its current leader: a stream whose
// leader moved loses the old series, and one no longer reported (not
// readable, or leaderless) loses its own.
func TestStreamLeaderSeriesFollowTheLeaders(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.StreamLeaders(map[string]string{"ORDERS": "n1", "ORDER_IDS": "n2", "ORDERS_REDRIVE": "n3"})
	m.StreamLeaders(map[string]string{"ORDERS": "n3", "ORDER_IDS": "n2", "ORDERS_REDRIVE": ""})
	want := `
# HELP ordersd_stream_leader 1 for the server that leads each of ordersd's streams, as JetStream's stream info last told this node (one series per stream; none while a stream has no leader or cannot be read).
# TYPE ordersd_stream_leader gauge
ordersd_stream_leader{server="n2",stream="ORDER_IDS"} 1
ordersd_stream_leader{server="n3",stream="ORDERS"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ordersd_stream_leader"); err != nil {
		t.Error(err)
	}
	m.StreamLeaders(nil)
	if n := testutil.CollectAndCount(reg, "ordersd_stream_leader"); n != 0 {
		t.Errorf("%d series left after no stream was reported", n)
	}
}
