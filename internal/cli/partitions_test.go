package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// --partitions is fixed when the streams are first made: a node restarted
// with the same number reads its orders back, and one started with
// another number, or with none, refuses to start and says how to go on.
func TestPartitionsAreFixedWhenTheStreamsAreMade(t *testing.T) {
	dataDir := t.TempDir()
	client, log, stop := startOrdersd(t, dataDir, "--review=false", "--partitions", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for i := range 6 {
		res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", RequestId: "r" + string(rune('a'+i)), CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.GetOrder().GetOrderId())
	}
	if !strings.Contains(log.String(), "layout=3 partitions=3 first_stream=ORDERS_0") {
		t.Fatalf("the node did not say it made 3 partitions:\n%s", log)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, log)
	}

	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--partitions", "2"}, "ordersd migrate --partitions 2"},
		{nil, "start this node with --partitions 3"},
	} {
		var stderr bytes.Buffer
		args := append([]string{"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--http-addr", "", "--data-dir", dataDir, "--review=false"}, tc.flags...)
		if code := Main(context.Background(), args, noEnv, &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("ordersd %v on 3 partitions: exit %d, %q; want exit 1 and %q", tc.flags, code, stderr.String(), tc.want)
		}
	}

	client, log, _ = startOrdersd(t, dataDir, "--review=false", "--partitions", "3")
	for _, id := range ids {
		if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id}); err != nil {
			t.Errorf("order %s after a restart on the same partitions: %v\n%s", id, err, log)
		}
	}
}
