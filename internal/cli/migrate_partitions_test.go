package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// `ordersd migrate --partitions 3` on the data directory of a node of
// layout 2 lays its orders out in three partitions and says what it did
// and how to delete the backup; then a node without --partitions refuses
// to start, naming --partitions 3, and a node with it serves every order.
// A number out of range is a bad flag.
func TestMigrateCommandToPartitions(t *testing.T) {
	dir := t.TempDir()
	client, log, stop := startOrdersd(t, dir, "--review=false")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := range 6 {
		res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: fmt.Sprintf("c-%d", i%2), RequestId: fmt.Sprintf("r-%d", i), CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.GetOrder().GetOrderId())
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, log)
	}

	if code, _, errOut := migrateCLI(t, "--data-dir", dir, "--partitions", fmt.Sprint(eventstore.MaxPartitions+1)); code != 2 || !strings.Contains(errOut, "--partitions must be") {
		t.Errorf("ordersd migrate --partitions %d: exit %d, %q; want 2 and the flag's range", eventstore.MaxPartitions+1, code, errOut)
	}
	code, out, errOut := migrateCLI(t, "--data-dir", dir, "--partitions", "3")
	if code != 0 {
		t.Fatalf("ordersd migrate --partitions 3: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"laid out in 3 partitions", "orders:    6", "ORDERS_2: last sequence", "start every node with --partitions 3",
		"nats stream rm " + eventstore.StreamName + "; nats stream rm " + eventstore.IndexStreamName} {
		if !strings.Contains(out, want) {
			t.Errorf("ordersd migrate --partitions 3 printed no %q:\n%s", want, out)
		}
	}

	var refusal bytes.Buffer
	args := []string{"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--http-addr", "", "--review=false"}
	if code := Main(ctx, args, noEnv, io.Discard, &refusal); code != 1 || !strings.Contains(refusal.String(), "start this node with --partitions 3") {
		t.Errorf("ordersd of layout 2 after the migration: exit %d, %q; want 1 naming --partitions 3", code, refusal.String())
	}
	client, log, stop = startOrdersd(t, dir, "--review=false", "--partitions", "3")
	for _, id := range ids {
		if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id}); err != nil {
			t.Errorf("GetOrder(%s) on 3 partitions after the migration: %v\n%s", id, err, log)
		}
	}
	list, err := client.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 100})
	if err != nil || len(list.GetOrders()) != len(ids) {
		t.Errorf("ListOrders on 3 partitions after the migration: %d orders, %v; want %d", len(list.GetOrders()), err, len(ids))
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, log)
	}
	if code, out, errOut := migrateCLI(t, "--data-dir", dir, "--partitions", "3"); code != 0 || !strings.Contains(out, "already") {
		t.Errorf("a second ordersd migrate --partitions 3: exit %d, %q %q; want nothing to do", code, out, errOut)
	}
}

// The order-review worker goes on across `ordersd migrate --partitions 3`:
// its durable consumer, made on every partition after its ack floor, is
// the one a node of three partitions reviews from, so the orders the old
// node left unreviewed and those created after the migration are all
// approved, each once.
func TestMigratedReviewGoesOnOnPartitions(t *testing.T) {
	dir := t.TempDir()
	client, log, stop := startOrdersd(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := func(i int) string {
		res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: fmt.Sprintf("c-%d", i%2), RequestId: fmt.Sprintf("r-%d", i), CurrencyCode: "EUR",
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetOrder().GetOrderId()
	}
	var ids []string
	for i := range 20 {
		ids = append(ids, create(i))
	}
	if code := stop(); code != 0 { // some reviewed, perhaps not all
		t.Fatalf("exit %d:\n%s", code, log)
	}
	if code, out, errOut := migrateCLI(t, "--data-dir", dir, "--partitions", "3"); code != 0 {
		t.Fatalf("ordersd migrate --partitions 3: exit %d\n%s%s", code, out, errOut)
	}
	client, log, _ = startOrdersd(t, dir, "--partitions", "3")
	for i := 20; i < 26; i++ {
		ids = append(ids, create(i))
	}
	for _, id := range ids {
		if !waitFor(30*time.Second, func() bool {
			res, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
			return err == nil && res.GetOrder().GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_APPROVED
		}) {
			t.Fatalf("order %s not approved on 3 partitions after the migration:\n%s", id, log)
		}
		history, err := client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		var approvals int
		for {
			res, err := history.Recv()
			if err != nil {
				break
			}
			if res.GetEvent().GetOrder().GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
				approvals++
			}
		}
		if approvals != 1 {
			t.Errorf("order %s approved %d times", id, approvals)
		}
	}
}
