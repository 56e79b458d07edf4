package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// partitionsUnderTest is N of the tests of RunPartitions.
const partitionsUnderTest = 3

// layout2 is a deployment of layout 2 written by a test through the
// store, as a node writes it.
type layout2 struct {
	js       jetstream.JetStream
	statuses map[string][]ordersv1.OrderStatus // order id → its events' statuses, in order
	customer map[string]string                 // order id → customer id
	reserved string                            // an order id claimed with no event
	// queueFloor is the ack floor of the durable consumer "queue"
	// (created events), and queueNext the orders whose created events
	// it had not acknowledged, in order.
	queueFloor uint64
	queueNext  []string
}

// writeLayout2 stores twelve orders of three customers in every status
// of the tests (created, approved, paid, cancelled) through a store of
// layout 2, the claim of an order id whose create died before its event,
// and the durable consumer "queue" of the created events, which
// acknowledged the first five and received the sixth without
// acknowledging it.
func writeLayout2(t *testing.T, js jetstream.JetStream) *layout2 {
	t.Helper()
	ctx := testsupport.Context(t, 30*time.Second)
	store, err := eventstore.New(js, eventstore.Options{Logger: testsupport.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	l := &layout2{js: js, statuses: map[string][]ordersv1.OrderStatus{}, customer: map[string]string{}}
	paths := [][]ordersv1.OrderStatus{{stCreated}, {stCreated, stApproved}, {stCreated, stApproved, stPaid}, {stCreated, stCancelled}}
	var created []string
	for i := range 12 {
		id, customer := fmt.Sprintf("o-%02d", i), fmt.Sprintf("c-%d", i%3)
		if _, err := store.Create(ctx, eventstore.NewOrder{OrderID: id, CustomerID: customer, CurrencyCode: "EUR", RequestID: "r-" + id,
			Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 100}}}); err != nil {
			t.Fatal(err)
		}
		l.customer[id], l.statuses[id] = customer, []ordersv1.OrderStatus{stCreated}
		created = append(created, id)
	}
	// The transitions come after every create, interleaved across orders.
	for step := 1; step < 3; step++ {
		for i, id := range created {
			path := paths[i%len(paths)]
			if step >= len(path) {
				continue
			}
			if _, err := store.Transition(ctx, eventstore.Change{OrderID: id, To: path[step], Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			l.statuses[id] = append(l.statuses[id], path[step])
		}
	}
	l.reserved = "o-reserved"
	claim, expectNew := eventstore.IndexEntry(eventstore.OrderKey{CustomerID: "c-9", OrderID: l.reserved})
	if _, err := js.PublishMsg(ctx, claim, expectNew); err != nil {
		t.Fatal(err)
	}
	filter, err := eventstore.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{stCreated}})
	if err != nil {
		t.Fatal(err)
	}
	info := consumeAndAck(t, js, "queue", filter[0], 5)
	l.queueFloor, l.queueNext = info.AckFloor.Stream, created[5:]
	ackEverything(t, js, "all")
	return l
}

// ackEverything makes the durable consumer name of every event, with no
// filter, and acknowledges every event there is.
func ackEverything(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	ctx := testsupport.Context(t, 10*time.Second)
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(stream.CachedInfo().State.Msgs), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := cons.Info(ctx); err != nil || info.AckFloor.Stream != stream.CachedInfo().State.LastSeq {
		t.Fatalf("consumer %s acknowledged up to %v, want every event (%v)", name, info, err)
	}
}

// partitionedStore opens a store of layout 3 with partitionsUnderTest
// partitions.
func partitionedStore(t *testing.T, js jetstream.JetStream) *eventstore.Store {
	t.Helper()
	store, err := eventstore.New(js, eventstore.Options{Logger: testsupport.Logger(), Layout: eventstore.Layout{Partitions: partitionsUnderTest}})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// checkPartitioned checks the partitions after a migration of old: each
// order's events in its partition, in order, on their subjects, each
// claim there, and nothing more (no message twice); a store of layout 3
// reads every order and lists them all; the consumer "queue" is on every
// partition and delivers the created events it had not acknowledged,
// and nothing it had; a store of layout 2 refuses to open.
func checkPartitioned(t *testing.T, js jetstream.JetStream, old *layout2) {
	t.Helper()
	ctx := testsupport.Context(t, 30*time.Second)
	layout := eventstore.Layout{Partitions: partitionsUnderTest}
	messages := make([]uint64, partitionsUnderTest)
	for id, statuses := range old.statuses {
		p := layout.Of(id)
		key := eventstore.OrderKey{CustomerID: old.customer[id], OrderID: id}
		subjects, err := p.OrderSubjects(key)
		if err != nil {
			t.Fatal(err)
		}
		var got []ordersv1.OrderStatus
		var seqs []uint64
		for _, raw := range partitionMessages(t, js, p, subjects) {
			status, ok := p.SubjectStatus(raw.subject)
			if !ok {
				t.Fatalf("order %s: %s in %s is not an event subject of it", id, raw.subject, p)
			}
			got, seqs = append(got, status), append(seqs, raw.seq)
		}
		if !slices.Equal(got, statuses) || !slices.IsSorted(seqs) {
			t.Errorf("order %s in %s: events %v at %v, want %v in order", id, p, got, seqs, statuses)
		}
		claims := partitionMessages(t, js, p, p.ClaimSubject(id))
		if len(claims) != 1 || claims[0].data != key.CustomerID || claims[0].seq > seqs[0] {
			t.Errorf("order %s: claims %+v in %s, want one naming %s before its first event", id, claims, p, key.CustomerID)
		}
		messages[p.Number] += uint64(len(statuses)) + 1
	}
	p := layout.Of(old.reserved)
	if claims := partitionMessages(t, js, p, p.ClaimSubject(old.reserved)); len(claims) != 1 || claims[0].data != "c-9" {
		t.Errorf("the claim of %s with no event: %+v in %s, want it kept", old.reserved, claims, p)
	}
	messages[p.Number]++
	for _, p := range layout.All() {
		info, err := js.Stream(ctx, p.Stream())
		if err != nil {
			t.Fatal(err)
		}
		if s := info.CachedInfo(); s.State.Msgs != messages[p.Number] || s.State.LastSeq != messages[p.Number] || s.Config.Metadata[eventstore.MetadataMigration] != "" {
			t.Errorf("%s holds %d messages up to %d (marker %q), want %d: each claim and event once, unmarked", p,
				s.State.Msgs, s.State.LastSeq, s.Config.Metadata[eventstore.MetadataMigration], messages[p.Number])
		}
	}

	store := partitionedStore(t, js)
	if err := store.Ready(ctx); err != nil {
		t.Fatalf("a store of layout 3 on the migrated partitions: %v", err)
	}
	for id, statuses := range old.statuses {
		order, err := store.Get(ctx, id)
		if err != nil || order.GetStatus() != statuses[len(statuses)-1] || order.GetCustomerId() != old.customer[id] {
			t.Errorf("Get(%s): %v, %v; want %v", id, order, err, statuses[len(statuses)-1])
			continue
		}
		var history []*ordersv1.OrderEvent
		if err := store.History(ctx, id, func(ev *ordersv1.OrderEvent) error { history = append(history, ev); return nil }, nil); err != nil {
			t.Fatalf("History(%s): %v", id, err)
		}
		if len(history) != len(statuses) || history[len(history)-1].GetSequence() != order.GetRevision() {
			t.Errorf("History(%s): %d events; want %d, the last at the order's revision %d", id, len(history), len(statuses), order.GetRevision())
		}
	}
	var listed []string
	for req := (eventstore.ListRequest{PageSize: 5}); ; {
		page, err := store.List(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Orders {
			listed = append(listed, o.GetOrderId())
		}
		if req.After = page.Next; page.Next == nil {
			break
		}
	}
	slices.Sort(listed)
	if want := slices.Sorted(mapKeys(old.statuses)); !slices.Equal(listed, want) {
		t.Errorf("List: %v, want every order once: %v", listed, want)
	}
	if _, err := store.Transition(ctx, eventstore.Change{OrderID: "o-01", To: stPaid}); err != nil {
		t.Errorf("pay approved o-01 after the migration: %v", err)
	}

	// The consumer "all" had acknowledged every event: it delivers only
	// the payment made since, from o-01's partition.
	var since []string
	for _, p := range layout.All() {
		cons, err := js.Consumer(ctx, p.Stream(), "all")
		if err != nil {
			t.Fatalf("consumer all on %s: %v", p, err)
		}
		if cfg := cons.CachedInfo().Config; !slices.Equal(cfg.FilterSubjects, []string{p.Subjects()}) {
			t.Errorf("all on %s filters %v, want [%s]", p, cfg.FilterSubjects, p.Subjects())
		}
		if p == layout.Of("o-01") {
			// The payment was just stored: wait for it (a consumer learns
			// of a new message after the stream has stored it).
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for msg := range batch.Messages() {
				since = append(since, p.String()+" "+msg.Subject())
			}
		}
		batch, err := cons.FetchNoWait(100) // and nothing else, which was there before
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			since = append(since, p.String()+" "+msg.Subject())
		}
	}
	paid, _ := layout.Of("o-01").EventSubject(stPaid, eventstore.OrderKey{CustomerID: old.customer["o-01"], OrderID: "o-01"})
	if want := []string{layout.Of("o-01").String() + " " + paid}; !slices.Equal(since, want) {
		t.Errorf("all delivers %v after the migration, want only %v", since, want)
	}

	var delivered []string
	for _, p := range layout.All() {
		cons, err := js.Consumer(ctx, p.Stream(), "queue")
		if err != nil {
			t.Fatalf("consumer queue on %s: %v", p, err)
		}
		want, _ := p.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{stCreated}})
		if cfg := cons.CachedInfo().Config; !slices.Equal(cfg.FilterSubjects, want) || cfg.FilterSubject != "" {
			t.Errorf("queue on %s filters %q %v, want %v", p, cfg.FilterSubject, cfg.FilterSubjects, want)
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			delivered = append(delivered, decoded(t, msg.Data()).GetOrderId())
		}
	}
	slices.Sort(delivered)
	if !slices.Equal(delivered, old.queueNext) {
		t.Errorf("queue delivers %v after the migration, want the created events after its ack floor %d: %v", delivered, old.queueFloor, old.queueNext)
	}

	checkLayout2Refused(t, js)
}

// checkLayout2Refused checks that a store of layout 2 refuses to open,
// naming --partitions.
func checkLayout2Refused(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	store, err := eventstore.New(js, eventstore.Options{Logger: testsupport.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("is only their backup: start this node with --partitions %d", partitionsUnderTest)
	if err := store.Ready(testsupport.Context(t, 10*time.Second)); !errors.Is(err, eventstore.ErrLayoutOutdated) || !strings.Contains(err.Error(), want) {
		t.Errorf("a store of layout 2 after the migration: %v, want ErrLayoutOutdated saying %q", err, want)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// storedMessage is a message of a partition, as the tests compare it.
type storedMessage struct {
	seq           uint64
	subject, data string
}

// partitionMessages returns the messages of p on filter, in order.
func partitionMessages(t *testing.T, js jetstream.JetStream, p eventstore.Partition, filter string) []storedMessage {
	t.Helper()
	ctx := testsupport.Context(t, 10*time.Second)
	cons, err := js.OrderedConsumer(ctx, p.Stream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedMessage
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, storedMessage{seq: meta.Sequence.Stream, subject: msg.Subject(), data: string(msg.Data())})
	}
	return out
}

// A deployment of layout 2 with orders of several customers in several
// statuses, an id claimed with no event and a durable consumer part-way
// through is laid out in three partitions (checkPartitioned); ORDERS and
// ORDER_IDS are kept, untouched, marked as the backup; running it again
// does nothing, and so does another number of partitions, saying why.
func TestMigrateToPartitions(t *testing.T) {
	js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
	ctx := testsupport.Context(t, 30*time.Second)
	old := writeLayout2(t, js)
	before, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}

	sum, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Orders != len(old.statuses) || sum.Reserved != 1 || sum.Partitions != partitionsUnderTest || len(sum.Consumers) != 2 ||
		sum.OldLastSeq != before.CachedInfo().State.LastSeq || sum.Events != int(before.CachedInfo().State.Msgs) {
		t.Errorf("summary %+v", sum)
	}
	checkPartitioned(t, js, old)
	for _, name := range []string{eventstore.StreamName, eventstore.IndexStreamName} {
		backup, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if meta := backup.CachedInfo().Config.Metadata; meta[eventstore.MetadataMigration] != eventstore.MigratedToPartitions || meta[eventstore.MetadataPartitions] != "3" {
			t.Errorf("%s's metadata after the migration: %v, want it marked as the backup", name, meta)
		}
	}
	if after, err := before.Info(ctx); err != nil || after.State.LastSeq != before.CachedInfo().State.LastSeq || after.State.Msgs != before.CachedInfo().State.Msgs {
		t.Errorf("the migration changed %s: %+v, was %+v (%v)", eventstore.StreamName, after.State, before.CachedInfo().State, err)
	}

	migrated := partitionLastSeqs(t, js)
	again, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log)
	if err != nil || !strings.Contains(again.NothingToDo, "already") {
		t.Fatalf("a second run: %+v, %v; want nothing done", again, err)
	}
	if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, 2, log); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("a run to 2 partitions after one to 3: %v, want a refusal", err)
	}
	if _, err := Run(ctx, js, eventstore.StreamOptions{}, log); err == nil || !strings.Contains(err.Error(), "does not take them back") {
		t.Errorf("`ordersd migrate` (layout 2) after one to partitions: %v, want a refusal", err)
	}
	if now := partitionLastSeqs(t, js); !slices.Equal(now, migrated) {
		t.Errorf("the runs after the migration changed the partitions: last sequences %v, were %v", now, migrated)
	}
}

// partitionLastSeqs are the last sequences of the partitions under test.
func partitionLastSeqs(t *testing.T, js jetstream.JetStream) []uint64 {
	t.Helper()
	var out []uint64
	for _, p := range (eventstore.Layout{Partitions: partitionsUnderTest}).All() {
		s, err := js.Stream(context.Background(), p.Stream())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s.CachedInfo().State.LastSeq)
	}
	return out
}

// A migration to partitions killed after any of its phases (and between
// the claim and the event of an order) is finished by the next run, with
// the same outcome and no message twice; in between, stores of both
// layouts refuse the streams.
func TestMigrateToPartitionsFinishesARunThatDied(t *testing.T) {
	for _, died := range []string{"after marking ORDERS", "after creating the partitions", "between a claim and its event",
		"after publishing", "after the consumers", "before marking ORDERS done"} {
		t.Run(died, func(t *testing.T) {
			js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
			ctx := testsupport.Context(t, 30*time.Second)
			old := writeLayout2(t, js)
			m := partitioning{js: js, opts: eventstore.StreamOptions{}.WithDefaults(), layout: eventstore.Layout{Partitions: partitionsUnderTest}, log: log}
			if died == "before marking ORDERS done" {
				if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log); err != nil {
					t.Fatal(err)
				}
				if err := m.setMetadata(ctx, eventstore.StreamName, map[string]string{eventstore.MetadataMigration: m.underWay(), metadataLastSeq: fmt.Sprint(mustLastSeq(t, js))}); err != nil {
					t.Fatal(err)
				}
			} else {
				diePartWay(t, &m, died)
			}
			for _, p := range m.layout.All() {
				// Refused by nodes of layout 3 on their own, should ORDERS go.
				if s, err := js.Stream(ctx, p.Stream()); err == nil && died != "before marking ORDERS done" && s.CachedInfo().Config.Metadata[eventstore.MetadataMigration] == "" {
					t.Errorf("%s is not marked while the migration fills it", p)
				}
			}
			if err := partitionedStore(t, js).Ready(ctx); !errors.Is(err, eventstore.ErrLayoutOutdated) {
				t.Errorf("a store of layout 3 during the migration: %v, want ErrLayoutOutdated", err)
			}
			store, err := eventstore.New(js, eventstore.Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Ready(ctx); !errors.Is(err, eventstore.ErrLayoutOutdated) {
				t.Errorf("a store of layout 2 during the migration: %v, want ErrLayoutOutdated", err)
			}
			if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest+1, log); err == nil || !strings.Contains(err.Error(), "under way") {
				t.Errorf("a run to another number while one is under way: %v, want a refusal", err)
			}
			if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log); err != nil {
				t.Fatal(err)
			}
			checkPartitioned(t, js, old)
		})
	}
}

// diePartWay runs the migration m up to the point died names.
func diePartWay(t *testing.T, m *partitioning, died string) {
	t.Helper()
	ctx := testsupport.Context(t, 30*time.Second)
	orders, err := m.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if orders, err = m.markOrders(ctx, orders); err != nil {
		t.Fatal(err)
	}
	if died == "after marking ORDERS" {
		return
	}
	if err := m.createPartitions(ctx); err != nil {
		t.Fatal(err)
	}
	switch died {
	case "after creating the partitions":
		return
	case "between a claim and its event":
		// An earlier run published o-00's claim and event, then o-01's
		// claim, in their partitions, and died.
		for i, id := range []string{"o-00", "o-01"} {
			key := eventstore.OrderKey{CustomerID: fmt.Sprintf("c-%d", i), OrderID: id}
			p := m.layout.Of(id)
			claim, expectNew := p.ClaimEntry(key)
			if _, err := m.js.PublishMsg(ctx, claim, expectNew); err != nil {
				t.Fatal(err)
			}
			if id == "o-01" {
				return
			}
			first, err := orders.GetMsg(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			subject, err := p.EventSubject(stCreated, key)
			if err != nil {
				t.Fatal(err)
			}
			msg := natsMsg(subject, first.Data)
			for _, h := range []string{eventstore.HeaderContentType, eventstore.HeaderEventType, eventstore.HeaderRequestID} {
				msg.Header.Set(h, first.Header.Get(h))
			}
			if _, err := m.js.PublishMsg(ctx, msg, m.layout.ExpectRevision(key, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs, err := m.durables(ctx, orders)
	if err != nil {
		t.Fatal(err)
	}
	_, floors, err := m.republish(ctx, orders, floorsOf(recs))
	if err != nil {
		t.Fatal(err)
	}
	if died == "after publishing" {
		return
	}
	if _, err := m.recreateConsumers(ctx, recs, floors); err != nil {
		t.Fatal(err)
	}
}

// mustLastSeq is the last sequence of ORDERS.
func mustLastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// natsMsg is a message on subject with data.
func natsMsg(subject string, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data
	return msg
}

// A write to ORDERS after the migration began (a node that was still
// running) makes the migration fail rather than leave the write behind.
func TestMigrateToPartitionsRefusesAStreamWrittenMeanwhile(t *testing.T) {
	js, log := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
	ctx := testsupport.Context(t, 30*time.Second)
	writeLayout2(t, js)
	m := partitioning{js: js, opts: eventstore.StreamOptions{}.WithDefaults(), layout: eventstore.Layout{Partitions: partitionsUnderTest}, log: log}
	orders, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.markOrders(ctx, orders); err != nil {
		t.Fatal(err)
	}
	// A node started before the marker writes on.
	order := &ordersv1.Order{OrderId: "o-late", CustomerId: "c-0", Status: stCreated, CurrencyCode: "EUR"}
	msg, err := eventstore.EncodeEvent(order, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log); err == nil || !strings.Contains(err.Error(), "is an ordersd node running") {
		t.Fatalf("a migration of a stream written meanwhile: %v, want a refusal", err)
	}
}

// A stream of layout 1 is not partitioned directly (the migration to
// layout 2 comes first), and a deployment made with partitions is not
// taken back to one stream nor to another number: each says so and
// changes nothing.
func TestMigrateToPartitionsRefusesWhatItDoesNotDo(t *testing.T) {
	log := testsupport.Logger()
	js := testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	ctx := testsupport.Context(t, 30*time.Second)
	writeLayout1(t, js)
	if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log); err == nil || !strings.Contains(err.Error(), "run `ordersd migrate` (without --partitions) first") {
		t.Errorf("RunPartitions on layout 1: %v, want a refusal naming `ordersd migrate`", err)
	}
	if _, err := js.Stream(ctx, eventstore.Layout{Partitions: partitionsUnderTest}.All()[0].Stream()); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a refused migration made a partition: %v", err)
	}

	js = testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	if err := partitionedStore(t, js).Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, js, eventstore.StreamOptions{}, log); err == nil || !strings.Contains(err.Error(), "does not take them back to one stream") {
		t.Errorf("`ordersd migrate` on partitions: %v, want a refusal", err)
	}
	if _, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest+1, log); err == nil || !strings.Contains(err.Error(), "another number of partitions is not supported") {
		t.Errorf("RunPartitions to %d on %d partitions: %v, want a refusal", partitionsUnderTest+1, partitionsUnderTest, err)
	}
	if sum, err := RunPartitions(ctx, js, eventstore.StreamOptions{}, partitionsUnderTest, log); err != nil || !strings.Contains(sum.NothingToDo, "already") {
		t.Errorf("RunPartitions to the same number: %+v, %v; want nothing to do", sum, err)
	}
}
