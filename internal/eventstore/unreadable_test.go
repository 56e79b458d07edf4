package eventstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ordersd/ordersd/internal/metrics"
)

// Each unreadable message is logged at WARN and counted once, however
// many reads meet it; other errors are not reported.
func TestUnreadablesReportEachMessageOnce(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	u := NewUnreadables(slog.New(slog.NewTextHandler(&logs, nil)), metrics.New(reg))
	first := Partition{}.unreadable("ORDERS.approved.c1.s1", 7, "the payload is not an orders.v1.Order in protobuf")
	second := Partition{}.unreadable("ORDERS.junk", 9, "the subject is not ORDERS.<event>.<customer_id>.<order_id>")
	for range 5 {
		u.Note(fmt.Errorf("read: %w", first))
		u.Note(second)
		u.Note(errors.New("something else"))
		u.Note(nil)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "sequence=7") ||
		!strings.Contains(lines[0], "order_id=s1") || !strings.Contains(lines[1], "sequence=9") {
		t.Fatalf("log lines:\n%s", logs.String())
	}
	count, err := testutil.GatherAndCount(reg, "ordersd_unreadable_events_total")
	if err != nil || count != 1 {
		t.Fatalf("series: %d, %v", count, err)
	}
	want := `
# HELP ordersd_unreadable_events_total Stored messages this node found not to be order events (another publisher's, or corrupt), by stream; each counted once, however often it is read.
# TYPE ordersd_unreadable_events_total counter
ordersd_unreadable_events_total{stream="ORDERS"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ordersd_unreadable_events_total"); err != nil {
		t.Fatal(err)
	}
}
