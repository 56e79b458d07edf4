package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/migrate"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// writeLayout1DataDir leaves in dir what an ordersd before subject layout
// 2 left: six orders of two customers, three of them approved, and the
// review worker's durable consumer, which had reviewed none yet.
func writeLayout1DataDir(t *testing.T, dir string) {
	t.Helper()
	ns, err := natsconn.StartEmbedded(natsconn.EmbeddedOptions{DataDir: dir, Logger: testsupport.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		order := &ordersv1.Order{OrderId: fmt.Sprintf("old-%d", i), CustomerId: fmt.Sprintf("customer-%d", i%2), CurrencyCode: "EUR",
			Status: ordersv1.OrderStatus_ORDER_STATUS_CREATED, Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 100}}, TotalMinor: 100}
		for _, st := range []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED, ordersv1.OrderStatus_ORDER_STATUS_APPROVED}[:1+i%2] {
			order.Status = st
			msg, err := eventstore.EncodeEvent(order, "")
			if err != nil {
				t.Fatal(err)
			}
			testsupport.PublishLayout1(t, js, msg)
		}
	}
	ctx := testsupport.Context(t, 10*time.Second)
	if _, err := js.CreateConsumer(ctx, eventstore.StreamName, jetstream.ConsumerConfig{Durable: consumers.ReviewConsumer,
		FilterSubject: eventstore.StreamName + ".created.*", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
}

// migrateCLI runs `ordersd migrate` with args and returns its exit status
// and output.
func migrateCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runMigrate(testsupport.Context(t, time.Minute), args, func(string) string { return "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// A data directory left by an ordersd of subject layout 1 is refused by a
// node, naming `ordersd migrate`; `ordersd migrate --data-dir` rewrites
// it offline (not while a node holds the directory) and says what it did;
// then ordersd serves every old order, and its review worker goes on
// with the migrated consumer: it approves the orders left created. A
// second run has nothing to do.
func TestMigrateCommandOnADataDir(t *testing.T) {
	dir := t.TempDir()
	writeLayout1DataDir(t, dir)

	var refusal bytes.Buffer
	if code := Main(testsupport.Context(t, time.Minute), []string{"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--http-addr", ""}, noEnv, io.Discard, &refusal); code != 1 || !strings.Contains(refusal.String(), "ordersd migrate") {
		t.Fatalf("ordersd on a layout 1 data directory: exit %d, %q; want 1 and a refusal naming `ordersd migrate`", code, refusal.String())
	}

	code, out, errOut := migrateCLI(t, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("ordersd migrate: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"rewritten into subject layout " + eventstore.UnpartitionedLayout, "events:    9, last sequence 9 -> 9", "orders:    6",
		consumers.ReviewConsumer + " (ORDERS.created.*.*): ack floor 0 -> starts at 1", "nats stream rm " + migrate.BackupStreamName} {
		if !strings.Contains(out, want) {
			t.Errorf("ordersd migrate printed no %q:\n%s", want, out)
		}
	}

	client, _, stop := startOrdersd(t, dir)
	ctx := testsupport.Context(t, 30*time.Second)
	for i := range 6 {
		id := fmt.Sprintf("old-%d", i)
		var (
			res *ordersv1.GetOrderResponse
			err error
		)
		reviewed := waitFor(20*time.Second, func() bool {
			res, err = client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
			return err == nil && res.GetOrder().GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_APPROVED
		})
		if !reviewed {
			t.Errorf("GetOrder(%s) after the migration: %v, %v; want APPROVED (by the review or before)", id, res.GetOrder(), err)
		}
	}
	list, err := client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "customer-1"})
	if err != nil || len(list.GetOrders()) != 3 {
		t.Errorf("ListOrders of customer-1: %v, %v; want its 3 orders", list.GetOrders(), err)
	}
	if code, _, errOut := migrateCLI(t, "--data-dir", dir); code != 1 || !strings.Contains(errOut, node.ErrDataDirLocked.Error()) {
		t.Errorf("ordersd migrate while a node runs on the directory: exit %d, %q; want 1 and %q", code, errOut, node.ErrDataDirLocked)
	}
	if code := stop(); code != 0 {
		t.Fatalf("ordersd exited with %d", code)
	}

	if code, out, errOut := migrateCLI(t, "--data-dir", dir); code != 0 || !strings.Contains(out, "already") {
		t.Errorf("a second ordersd migrate: exit %d, %q %q; want nothing to do", code, out, errOut)
	}
}
