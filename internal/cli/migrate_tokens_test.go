package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/migrate"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// Ack tokens and page tokens name the stream they were issued for: after
// the stream ORDERS is migrated again (here to the very same events at
// the very same sequences, under the same ack token key), a token of the
// old stream is refused with INVALID_ARGUMENT saying so, and none of its
// acks is applied; tokens of the new stream work.
func TestTokensOfTheStreamBeforeAMigrationAreRefused(t *testing.T) {
	dir := t.TempDir()
	keyFile := testsupport.AckKeyFile(t)
	writeLayout1DataDir(t, dir)
	if code, out, errOut := migrateCLI(t, "--data-dir", dir); code != 0 {
		t.Fatalf("ordersd migrate: exit %d\n%s%s", code, out, errOut)
	}
	client, _, stop := startOrdersd(t, dir, "--review=false", "--ack-token-key-file", keyFile)
	ctx := testsupport.Context(t, time.Minute)
	oldAck := firstDeliveryToken(t, client, "before")
	page, err := client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "customer-0", PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("ListOrders before: %v, %v; want a page and a next page token", page, err)
	}
	oldPage := page.GetNextPageToken()
	if code := stop(); code != 0 {
		t.Fatalf("ordersd exited with %d", code)
	}

	// The stream is rewritten: the same events, the same sequences.
	dropStreams(t, dir, eventstore.StreamName, eventstore.IndexStreamName, migrate.BackupStreamName)
	writeLayout1DataDir(t, dir)
	if code, out, errOut := migrateCLI(t, "--data-dir", dir); code != 0 {
		t.Fatalf("the second ordersd migrate: exit %d\n%s%s", code, out, errOut)
	}

	client, _, stop = startOrdersd(t, dir, "--review=false", "--ack-token-key-file", keyFile)
	_, err = client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: oldAck, Action: ordersv1.AckAction_ACK_ACTION_ACK}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "earlier incarnation of the stream ORDERS") {
		t.Errorf("AckOrders with a token of the stream before the migration: %v; want INVALID_ARGUMENT naming the earlier stream", err)
	}
	_, err = client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "customer-0", PageSize: 1, PageToken: oldPage})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "earlier streams of the orders (before `ordersd migrate`") {
		t.Errorf("ListOrders with a page token of the stream before the migration: %v; want INVALID_ARGUMENT naming the earlier stream", err)
	}

	// The tokens of the new stream work.
	newAck := firstDeliveryToken(t, client, "after")
	res, err := client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: newAck, Action: ordersv1.AckAction_ACK_ACTION_ACK}}})
	if err != nil || !res.GetResults()[0].GetConfirmed() {
		t.Errorf("AckOrders with a token of the new stream: %v, %v", res, err)
	}
	page, err = client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "customer-0", PageSize: 1})
	if err == nil {
		_, err = client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "customer-0", PageSize: 1, PageToken: page.GetNextPageToken()})
	}
	if err != nil {
		t.Errorf("ListOrders with a page token of the new stream: %v", err)
	}
}

// firstDeliveryToken consumes one created event on a new consumer and
// returns its ack token, leaving it unacked.
func firstDeliveryToken(t *testing.T, client ordersv1.OrderServiceClient, consumer string) string {
	t.Helper()
	ctx := testsupport.Context(t, 30*time.Second)
	stream, err := client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: consumer, Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight: 1, Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetEvent() != nil {
			return res.GetAckToken()
		}
	}
}

// dropStreams deletes streams from the data directory of a stopped node.
func dropStreams(t *testing.T, dir string, names ...string) {
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
	for _, name := range names {
		if err := js.DeleteStream(testsupport.Context(t, 10*time.Second), name); err != nil {
			t.Fatalf("delete stream %s: %v", name, err)
		}
	}
}
