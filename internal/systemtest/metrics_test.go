package systemtest

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// scrape reads /metrics and returns the value of one series (summed over
// its label sets when several match).
func scrape(t *testing.T, base, series string) float64 {
	t.Helper()
	body := get(t, base+"/metrics", http.StatusOK)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + `(?:\{[^}]*\})? ([0-9.e+-]+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		total += v
	}
	return total
}

func get(t *testing.T, url string, want int) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, res.StatusCode, body, want)
	}
	return string(body)
}

// The metrics endpoint serves the named series and they move when RPCs
// run; the probes answer.
func TestMetricsMoveWithCalls(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir())
	base := "http://" + ready.MetricsAddr.String()
	get(t, base+"/livez", http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	conn, err := grpc.NewClient(ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ordersv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	before := map[string]float64{}
	series := []string{
		"grpc_server_handled_total", "ordersd_publish_duration_seconds_count",
		"ordersd_consumer_deliveries_total", "ordersd_watch_events_total",
	}
	for _, s := range series {
		before[s] = scrape(t, base, s)
	}
	watch, err := client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // caught_up
		t.Fatal(err)
	}
	if got := scrape(t, base, "ordersd_watchers"); got != 1 {
		t.Errorf("ordersd_watchers = %v, want 1", got)
	}
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // the created event
		t.Fatal(err)
	}
	consume, err := client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{Consumer: "metrics", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consume.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, base, "ordersd_consumer_in_flight"); got != 1 {
		t.Errorf("ordersd_consumer_in_flight = %v, want 1", got)
	}
	for _, s := range series {
		if after := scrape(t, base, s); after <= before[s] {
			t.Errorf("%s did not move: %v, then %v", s, before[s], after)
		}
	}
	for _, s := range []string{"ordersd_nats_connected", "ordersd_jetstream_ready"} {
		if got := scrape(t, base, s); got != 1 {
			t.Errorf("%s = %v, want 1", s, got)
		}
	}
}
