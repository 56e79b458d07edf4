package eventstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// CapturedSubjects has one subject per event type, each of the shape
// EventSubject makes.
func TestCapturedSubjectsAreTheLayouts(t *testing.T) {
	got := CapturedSubjects()
	if len(got) != len(eventTokens) || len(eventOrder) != len(eventTokens) {
		t.Fatalf("CapturedSubjects = %v for %d event types", got, len(eventTokens))
	}
	for status := range eventTokens {
		subject, err := EventSubject(status, OrderKey{CustomerID: "c", OrderID: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if want := StreamName + "." + EventType(status) + ".*.*"; !slices.Contains(got, want) || subject != StreamName+"."+EventType(status)+".c.o" {
			t.Errorf("status %v: subject %s, captured %v", status, subject, got)
		}
	}
}

// The streams of an existing deployment, made when they captured all of
// ORDERS.> and ORDER_IDS.>, are narrowed in place at start-up: what they
// hold stays and reads as before, their consumers keep their filters
// (ORDERS.> included), and a publish outside the layout gets JetStream's
// "no stream" answer from then on. A message stored on such a subject
// before is skipped by reads, and reported.
func TestReadyNarrowsTheSubjectsOfAnExistingDeployment(t *testing.T) {
	js, log := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := DefaultStreamOptions.StreamConfig()
	old.Subjects = []string{StreamSubjects}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	oldIndex := DefaultStreamOptions.IndexStreamConfig()
	oldIndex.Subjects = []string{IndexStreamName + ".>"}
	if _, err := js.CreateStream(ctx, oldIndex); err != nil {
		t.Fatal(err)
	}
	before, err := New(js, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	before.provisioned.Store(true) // as the older ordersd left it: not updated again
	created, err := before.Create(ctx, NewOrder{OrderID: "o-1", CustomerID: "c-1", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	junk, err := js.Publish(ctx, "ORDERS.junk", []byte(`{"id":"s1"}`))
	if err != nil {
		t.Fatalf("the old stream refused ORDERS.junk: %v", err)
	}
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	durables := map[string]string{"work": "ORDERS.created.*.*", "everything": StreamSubjects}
	for name, filter := range durables {
		if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}

	store, err := New(js, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Config.Subjects, CapturedSubjects()) || info.State.Msgs != 2 {
		t.Fatalf("stream ORDERS after start-up: subjects %v, %d messages; want %v and both messages", info.Config.Subjects, info.State.Msgs, CapturedSubjects())
	}
	index, err := js.Stream(ctx, IndexStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := index.CachedInfo().Config.Subjects; !slices.Equal(got, []string{IndexStreamName + ".*"}) {
		t.Fatalf("stream ORDER_IDS captures %v", got)
	}
	for name, filter := range durables {
		cons, err := stream.Consumer(ctx, name)
		if err != nil || cons.CachedInfo().Config.FilterSubject != filter || cons.CachedInfo().NumPending != map[string]uint64{"work": 1, "everything": 2}[name] {
			t.Fatalf("consumer %s after start-up: %v, %v", name, cons, err)
		}
	}
	for _, subject := range []string{"ORDERS.junk", "ORDERS.created", "ORDER_IDS.a.b"} {
		if _, err := js.Publish(ctx, subject, []byte(`{"id":"s1"}`)); !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish on %s after start-up: %v, want no stream", subject, err)
		}
	}
	got, err := store.Get(ctx, "o-1")
	if err != nil || got.GetRevision() != created.Order.GetRevision() {
		t.Fatalf("Get after start-up: %v, %v", got, err)
	}
	if _, err := store.Transition(ctx, Change{OrderID: "o-1", To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}); err != nil {
		t.Fatalf("Transition after start-up: %v", err)
	}
	var events []uint64
	var skipped []*UnreadableError
	if _, err := store.Read(ctx, ReadRequest{Skipped: func(u *UnreadableError) error { skipped = append(skipped, u); return nil }},
		func(ev *ordersv1.OrderEvent) error { events = append(events, ev.GetSequence()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || len(skipped) != 1 || skipped[0].Sequence != junk.Sequence || skipped[0].Subject != "ORDERS.junk" || skipped[0].OrderID != "" {
		t.Fatalf("Read of every event: events %v, skipped %v", events, skipped)
	}
}
