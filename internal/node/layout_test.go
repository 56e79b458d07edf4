package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// A node finding the stream ORDERS with events in subject layout 1
// refuses to start, and says which command rewrites it; the stream is
// left as it was.
func TestNodeRefusesAStreamInTheOldLayout(t *testing.T) {
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	js := testsupport.JetStream(t, ns)
	msg, err := eventstore.EncodeEvent(&ordersv1.Order{OrderId: "o-1", CustomerId: "c-1",
		Status: ordersv1.OrderStatus_ORDER_STATUS_CREATED, CurrencyCode: "EUR"}, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	testsupport.PublishLayout1(t, js, msg)

	ctx := testsupport.Context(t, 10*time.Second)
	_, err = Assemble(ctx, testsupport.Connect(t, ns), ServiceOptions{Tokens: consumers.RandomAckTokens()}, testsupport.Logger())
	if !errors.Is(err, eventstore.ErrLayoutOutdated) || !strings.Contains(err.Error(), "ordersd migrate") {
		t.Fatalf("Assemble on a layout 1 stream: %v, want ErrLayoutOutdated naming `ordersd migrate`", err)
	}
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info := stream.CachedInfo(); info.State.Msgs != 1 || info.Config.Metadata[eventstore.MetadataLayout] != "" {
		t.Errorf("the refused stream changed: %d messages, layout %q", info.State.Msgs, info.Config.Metadata[eventstore.MetadataLayout])
	}
}

// An empty stream ORDERS made before layout 2 holds nothing to rewrite:
// the node adopts it, and records the layout in it.
func TestNodeAdoptsAnEmptyStreamOfTheOldLayout(t *testing.T) {
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	js := testsupport.JetStream(t, ns)
	ctx := testsupport.Context(t, 10*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: eventstore.StreamName, Subjects: []string{eventstore.StreamSubjects}}); err != nil {
		t.Fatal(err)
	}
	svc, err := Assemble(ctx, testsupport.Connect(t, ns), ServiceOptions{Tokens: consumers.RandomAckTokens()}, testsupport.Logger())
	if err != nil {
		t.Fatalf("Assemble on an empty layout 1 stream: %v", err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(time.Second) })
	if _, err := svc.Store.Create(ctx, eventstore.NewOrder{OrderID: "o-1", CustomerID: "c-1", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}}); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.Metadata[eventstore.MetadataLayout]; got != eventstore.UnpartitionedLayout {
		t.Errorf("layout metadata %q, want %q", got, eventstore.UnpartitionedLayout)
	}
}
