package migrate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

const (
	stCreated   = ordersv1.OrderStatus_ORDER_STATUS_CREATED
	stApproved  = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
	stPaid      = ordersv1.OrderStatus_ORDER_STATUS_PAID
	stCancelled = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
)

// layout1 is a stream ORDERS written in layout 1 by a test, as ordersd
// wrote it before layout 2.
type layout1 struct {
	js     jetstream.JetStream
	events []*nats.Msg         // every event stored, in order, as EncodeEvent built it
	orders map[string][]uint64 // order id → sequences of its events
}

// writeLayout1 stores four orders of two customers, with transitions and
// a message that is not an order event, in layout 1.
func writeLayout1(t *testing.T, js jetstream.JetStream) *layout1 {
	t.Helper()
	l := &layout1{js: js, orders: map[string][]uint64{}}
	l.store(t, "c-1", "o-1", stCreated, stApproved, stPaid)
	// Not carried over: every later event moves one sequence down.
	if _, err := js.Publish(context.Background(), eventstore.StreamName+".misc", []byte("not an order")); err != nil {
		t.Fatal(err)
	}
	l.store(t, "c-1", "o-2", stCreated, stCancelled)
	l.store(t, "c-2", "o-3", stCreated)
	l.store(t, "c-2", "o-4", stCreated, stApproved)
	return l
}

// store writes one order's events, each with a request id and a trace
// context.
func (l *layout1) store(t *testing.T, customer, id string, path ...ordersv1.OrderStatus) {
	t.Helper()
	order := &ordersv1.Order{OrderId: id, CustomerId: customer, CurrencyCode: "EUR", CreateTime: timestamppb.Now(),
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 100}}, TotalMinor: 100}
	for _, st := range path {
		order.Status = st
		msg, err := eventstore.EncodeEvent(order, id+"-"+eventstore.EventType(st))
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		l.orders[id] = append(l.orders[id], testsupport.PublishLayout1(t, l.js, msg))
		l.events = append(l.events, msg)
	}
}

// consumeAndAck makes the durable pull consumer name with filter and
// acknowledges the first acked events it delivers, then fetches one more
// without acking it.
func consumeAndAck(t *testing.T, js jetstream.JetStream, name, filter string, acked int, tune ...func(*jetstream.ConsumerConfig)) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := testsupport.Context(t, 10*time.Second)
	cfg := jetstream.ConsumerConfig{Durable: name, FilterSubject: filter,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour, Metadata: map[string]string{"owner": "test"}}
	for _, f := range tune {
		f(&cfg)
	}
	cons, err := js.CreateConsumer(ctx, eventstore.StreamName, cfg)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(acked+1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		if n++; n <= acked {
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// A layout 1 stream with orders, transitions, a foreign message and
// durable consumers part-way through is rewritten: every order reads as
// before (with new revisions), one customer's events are selected by
// subject, headers are kept, each durable consumer resumes just after its
// ack floor with its filter translated, an ephemeral consumer is gone, and
// the store writes on. Running it again changes nothing.
func TestMigrateRewritesTheOldLayout(t *testing.T) {
	js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
	ctx := testsupport.Context(t, 30*time.Second)
	old := writeLayout1(t, js)
	queue := consumeAndAck(t, js, "queue", eventstore.StreamName+".created.*", 2)
	perOrder := consumeAndAck(t, js, "order-o-1", eventstore.StreamName+".*.o-1", 1)
	fromO3 := old.orders["o-3"][0]
	consumeAndAck(t, js, "from-o-3", eventstore.StreamName+".created.*", 0, func(c *jetstream.ConsumerConfig) {
		c.DeliverPolicy, c.OptStartSeq = jetstream.DeliverByStartSequencePolicy, fromO3
	})
	if _, err := js.CreateConsumer(ctx, eventstore.StreamName, jetstream.ConsumerConfig{InactiveThreshold: time.Hour}); err != nil {
		t.Fatal(err)
	}

	sum, err := Run(ctx, js, eventstore.StreamOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, js, old, sum, 3)
	if q, p := queue.AckFloor.Stream, perOrder.AckFloor.Stream; q < old.orders["o-2"][0] || q >= old.orders["o-3"][0] || p != old.orders["o-1"][0] {
		t.Fatalf("the test's consumers acked up to %d and %d, want o-2's and o-1's created events", q, p)
	}

	// The work queue acked o-1's and o-2's created events; o-3's was
	// delivered but not acked: it comes again, then o-4's.
	checkResumes(t, js, "queue", eventstore.StreamName+".created.*.*", "o-3", "o-4")
	// The per-order consumer acked o-1's created event: approved and paid come.
	checkResumes(t, js, "order-o-1", eventstore.StreamName+".*.c-1.o-1", "o-1", "o-1")
	// The consumer that started at o-3's created event never acked it.
	checkResumes(t, js, "from-o-3", eventstore.StreamName+".created.*.*", "o-3", "o-4")
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Consumers; n != 3 {
		t.Errorf("%d consumers on the migrated stream, want the 3 durable ones", n)
	}
	cons, err := stream.Consumer(ctx, "queue")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.AckWait != time.Hour || cfg.Metadata["owner"] != "test" || cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("the queue's settings were not kept: ack wait %v, metadata %v, deliver policy %v", cfg.AckWait, cfg.Metadata, cfg.DeliverPolicy)
	}
	cons, err = stream.Consumer(ctx, "from-o-3")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq != 6 {
		t.Errorf("from-o-3 starts by %v at %d, want by sequence at 6 (o-3's created event, renumbered)", cfg.DeliverPolicy, cfg.OptStartSeq)
	}

	before, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Run(ctx, js, eventstore.StreamOptions{}, log)
	if err != nil || !strings.Contains(again.NothingToDo, "already") {
		t.Fatalf("a second run: %+v, %v; want nothing done", again, err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.LastSeq != before.State.LastSeq || info.State.Msgs != before.State.Msgs {
		t.Fatalf("a second run changed the stream: %v, %v", info, err)
	}
}

// checkMigrated checks the stream ORDERS after a migration of old.
func checkMigrated(t *testing.T, js jetstream.JetStream, old *layout1, sum Summary, consumers int) {
	t.Helper()
	ctx := testsupport.Context(t, 30*time.Second)
	if sum.Events != len(old.events) || sum.Orders != len(old.orders) || sum.Skipped != 1 ||
		sum.OldLastSeq != uint64(len(old.events)+1) || sum.NewLastSeq != uint64(len(old.events)) || len(sum.Consumers) != consumers || sum.Backup != BackupStreamName {
		t.Errorf("summary %+v, want %d events, %d orders, 1 skipped, %d consumers", sum, len(old.events), len(old.orders), consumers)
	}
	store, err := eventstore.New(js, eventstore.Options{Logger: testsupport.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(ctx); err != nil {
		t.Fatalf("a store on the migrated stream: %v", err)
	}
	wantStatus := map[string]ordersv1.OrderStatus{"o-1": stPaid, "o-2": stCancelled, "o-3": stCreated, "o-4": stApproved}
	for id, want := range wantStatus {
		order, err := store.Get(ctx, id)
		if err != nil || order.GetStatus() != want {
			t.Errorf("Get(%s): %v, %v; want %v", id, order.GetStatus(), err, want)
			continue
		}
		var history []*ordersv1.OrderEvent
		if err := store.History(ctx, id, func(ev *ordersv1.OrderEvent) error { history = append(history, ev); return nil }, nil); err != nil {
			t.Fatalf("History(%s): %v", id, err)
		}
		if len(history) != len(old.orders[id]) || history[len(history)-1].GetSequence() != order.GetRevision() {
			t.Errorf("History(%s): %d events, last at %d; want %d, last at revision %d", id, len(history),
				history[len(history)-1].GetSequence(), len(old.orders[id]), order.GetRevision())
		}
	}
	page, err := store.List(ctx, eventstore.ListRequest{CustomerID: "c-2", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range page.Orders {
		listed = append(listed, o.GetOrderId())
	}
	if !slices.Equal(listed, []string{"o-3", "o-4"}) {
		t.Errorf("List of c-2: %v, want [o-3 o-4]", listed)
	}
	// Every event at its new sequence, in the old order, with its headers
	// but no message id.
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range old.events {
		raw, err := stream.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if raw.Subject != want.Subject || !proto.Equal(decoded(t, raw.Data), decoded(t, want.Data)) {
			t.Errorf("sequence %d: %s, want %s", i+1, raw.Subject, want.Subject)
		}
		for _, h := range []string{eventstore.HeaderContentType, eventstore.HeaderEventType, eventstore.HeaderRequestID, "traceparent"} {
			if raw.Header.Get(h) != want.Header.Get(h) || raw.Header.Get(h) == "" {
				t.Errorf("sequence %d: header %s = %q, want %q", i+1, h, raw.Header.Get(h), want.Header.Get(h))
			}
		}
		if id := raw.Header.Get(nats.MsgIdHdr); id != "" {
			t.Errorf("sequence %d: kept message id %q", i+1, id)
		}
	}
	// The store writes on: a transition of a migrated order, a new order.
	if _, err := store.Transition(ctx, eventstore.Change{OrderID: "o-4", To: stPaid}); err != nil {
		t.Errorf("pay o-4 after the migration: %v", err)
	}
	if _, err := store.Create(ctx, eventstore.NewOrder{OrderID: "o-3", CustomerID: "c-9", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}}); !errors.Is(err, eventstore.ErrAlreadyExists) {
		t.Errorf("another customer creating migrated o-3: %v, want ErrAlreadyExists (indexed)", err)
	}
}

func decoded(t *testing.T, data []byte) *ordersv1.Order {
	t.Helper()
	o := &ordersv1.Order{}
	if err := proto.Unmarshal(data, o); err != nil {
		t.Fatal(err)
	}
	return o
}

// checkResumes checks the durable consumer name's filter and that it
// delivers the events of ids next, in this order.
func checkResumes(t *testing.T, js jetstream.JetStream, name, filter string, ids ...string) {
	t.Helper()
	ctx := testsupport.Context(t, 10*time.Second)
	cons, err := js.Consumer(ctx, eventstore.StreamName, name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.FilterSubject != filter {
		t.Errorf("%s: filter %q, want %q", name, cfg.FilterSubject, filter)
	}
	batch, err := cons.Fetch(len(ids)+1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for msg := range batch.Messages() {
		got = append(got, decoded(t, msg.Data()).GetOrderId())
	}
	if !slices.Equal(got, ids) {
		t.Errorf("%s delivers %v after the migration, want %v", name, got, ids)
	}
}

// A migration that died after its copy, or after publishing some events
// again, is finished by the next run, with the same outcome as a run that
// never stopped; in between, a store refuses the half-made stream.
func TestMigrateFinishesARunThatDied(t *testing.T) {
	for _, died := range []string{"after the copy", "after the old stream was replaced", "while publishing again", "before marking the backup done"} {
		t.Run(died, func(t *testing.T) {
			js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
			ctx := testsupport.Context(t, 30*time.Second)
			old := writeLayout1(t, js)
			consumeAndAck(t, js, "queue", eventstore.StreamName+".created.*", 2)
			consumeAndAck(t, js, "order-o-1", eventstore.StreamName+".*.o-1", 1)

			m := migration{js: js, opts: eventstore.StreamOptions{}.WithDefaults(), log: log}
			if died == "before marking the backup done" {
				if _, err := Run(ctx, js, eventstore.StreamOptions{}, log); err != nil {
					t.Fatal(err)
				}
				backup, err := js.Stream(ctx, BackupStreamName)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.setPhase(ctx, backup, phaseCopied); err != nil {
					t.Fatal(err)
				}
				// The run again finds the stream done and the consumers
				// made: it publishes nothing and leaves them be.
				sum, err := Run(ctx, js, eventstore.StreamOptions{}, log)
				if err != nil {
					t.Fatal(err)
				}
				checkMigrated(t, js, old, sum, 0)
				checkResumes(t, js, "queue", eventstore.StreamName+".created.*.*", "o-3", "o-4")
				return
			}
			backup, err := m.copy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if died != "after the copy" {
				if err := m.replaceStream(ctx, backup); err != nil {
					t.Fatal(err)
				}
				store, err := eventstore.New(js, eventstore.Options{Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				if err := store.Ready(ctx); !errors.Is(err, eventstore.ErrLayoutOutdated) {
					t.Fatalf("a store on a stream being migrated: %v, want ErrLayoutOutdated", err)
				}
			}
			if died == "while publishing again" {
				// An earlier run published the first three events (and
				// none of their index entries) before it died.
				for i, event := range old.events[:3] {
					msg := nats.NewMsg(event.Subject)
					msg.Data = event.Data
					for _, h := range []string{eventstore.HeaderContentType, eventstore.HeaderEventType, eventstore.HeaderRequestID, "traceparent"} {
						msg.Header.Set(h, event.Header.Get(h))
					}
					if _, err := js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequence(uint64(i))); err != nil {
						t.Fatal(err)
					}
				}
			}

			sum, err := Run(ctx, js, eventstore.StreamOptions{}, log)
			if err != nil {
				t.Fatal(err)
			}
			checkMigrated(t, js, old, sum, 2)
			checkResumes(t, js, "queue", eventstore.StreamName+".created.*.*", "o-3", "o-4")
			checkResumes(t, js, "order-o-1", eventstore.StreamName+".*.c-1.o-1", "o-1", "o-1")
		})
	}
}

// Migrating a stream that is in the new layout already, or no stream,
// does nothing and says so.
func TestMigrateOfTheNewLayoutIsANoOp(t *testing.T) {
	js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
	ctx := testsupport.Context(t, 10*time.Second)
	sum, err := Run(ctx, js, eventstore.StreamOptions{}, log)
	if err != nil || !strings.Contains(sum.NothingToDo, "no stream") {
		t.Fatalf("with no stream: %+v, %v", sum, err)
	}
	store, err := eventstore.New(js, eventstore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, eventstore.NewOrder{OrderID: "o-1", CustomerID: "c-1", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}}); err != nil {
		t.Fatal(err)
	}
	sum, err = Run(ctx, js, eventstore.StreamOptions{}, log)
	if err != nil || !strings.Contains(sum.NothingToDo, "layout "+eventstore.UnpartitionedLayout+" already") {
		t.Fatalf("on layout %s: %+v, %v", eventstore.UnpartitionedLayout, sum, err)
	}
	if _, err := js.Stream(ctx, BackupStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a no-op made a backup: %v", err)
	}
	if order, err := store.Get(ctx, "o-1"); err != nil || order.GetRevision() != 1 {
		t.Errorf("Get after a no-op: %v, %v", order, err)
	}
}

// A stream named like the backup that a migration did not make is not
// taken for one.
func TestMigrateRefusesABackupItDidNotMake(t *testing.T) {
	js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
	ctx := testsupport.Context(t, 10*time.Second)
	writeLayout1(t, js)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: BackupStreamName, Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, js, eventstore.StreamOptions{}, log); err == nil || !strings.Contains(err.Error(), "did not make") {
		t.Fatalf("Run with a foreign %s: %v, want a refusal", BackupStreamName, err)
	}
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil || stream.CachedInfo().Config.Metadata[eventstore.MetadataLayout] != "" {
		t.Fatalf("the old stream was touched: %v", err)
	}
}
