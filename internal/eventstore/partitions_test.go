package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// partitionedStore is a store of layout 3 with n partitions on a fresh
// JetStream.
func partitionedStore(t *testing.T, n int) (*Store, jetstream.JetStream) {
	t.Helper()
	js, log := startJetStream(t)
	store, err := New(js, Options{Layout: Layout{Partitions: n}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store, js
}

func newOrder(customer, orderID, requestID string) NewOrder {
	return NewOrder{RequestID: requestID, OrderID: orderID, CustomerID: customer, CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "sku-1", Quantity: 1, UnitPriceMinor: 100}}}
}

// Each order lands in the partition PartitionOf names, its claim and its
// events in that one stream, and every per-order call finds it there.
func TestOrdersLiveInThePartitionOfTheirID(t *testing.T) {
	const n = 3
	store, js := partitionedStore(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	perPartition := make([]int, n)
	for i := range 30 {
		id := fmt.Sprintf("order-%d", i)
		res, err := store.Create(ctx, newOrder("c1", id, ""))
		if err != nil {
			t.Fatal(err)
		}
		k := PartitionOf(id, n)
		perPartition[k]++
		stream, err := js.Stream(ctx, Partition{Number: k, Of: n}.Stream())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := stream.GetMsg(ctx, res.Order.GetRevision())
		if err != nil || raw.Subject != "ORDERS."+strconv.Itoa(k)+".created.c1."+id {
			t.Fatalf("order %s at revision %d of %s: %v, %v", id, res.Order.GetRevision(), stream.CachedInfo().Config.Name, raw, err)
		}
		claim, err := stream.GetLastMsgForSubject(ctx, "ORDER_IDS."+strconv.Itoa(k)+"."+id)
		if err != nil || string(claim.Data) != "c1" {
			t.Fatalf("claim of %s in %s: %v, %v", id, stream.CachedInfo().Config.Name, claim, err)
		}
		if _, err := store.Transition(ctx, Change{OrderID: id, To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ExpectedRevision: res.Order.GetRevision()}); err != nil {
			t.Fatal(err)
		}
		got, err := store.Get(ctx, id)
		if err != nil || got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
			t.Fatalf("Get %s: %v, %v", id, got, err)
		}
		var history []ordersv1.OrderStatus
		if err := store.History(ctx, id, func(ev *ordersv1.OrderEvent) error {
			history = append(history, ev.GetOrder().GetStatus())
			return nil
		}, nil); err != nil || len(history) != 2 {
			t.Fatalf("History %s: %v, %v", id, history, err)
		}
	}
	for k, count := range perPartition {
		if count == 0 {
			t.Errorf("partition %d got none of 30 orders: %v", k, perPartition)
		}
	}
	if _, err := js.Stream(ctx, StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("layout 3 made the stream ORDERS: %v", err)
	}
	if _, err := js.Stream(ctx, IndexStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("layout 3 made the stream ORDER_IDS: %v", err)
	}
}

// A retried create without an order id finds its original however long
// after it comes (its id is derived from the request id, so it claims the
// same id in the same partition), an id taken by another customer is
// ErrAlreadyExists, and a request id of another customer's create is
// ErrRequestIDReused.
func TestCreatesKeepTheirGuaranteesAcrossPartitions(t *testing.T) {
	store, js := partitionedStore(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := store.Create(ctx, newOrder("c1", "", "req-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Order.GetOrderId() != OrderIDOf("req-1") {
		t.Fatalf("server-made id %q, want OrderIDOf(req-1) %q", first.Order.GetOrderId(), OrderIDOf("req-1"))
	}
	again, err := store.Create(ctx, newOrder("c1", "", "req-1"))
	if err != nil || !again.Duplicate || again.Order.GetOrderId() != first.Order.GetOrderId() || again.Order.GetRevision() != first.Order.GetRevision() {
		t.Fatalf("retry: %+v, %v; want the original %s", again, err, first.Order.GetOrderId())
	}
	// Past the duplicate window only the claim can find the original: an
	// original stored without a Nats-Msg-Id is what JetStream remembers
	// of a write once the window has passed.
	old := OrderKey{CustomerID: "c1", OrderID: OrderIDOf("req-old")}
	claim, expectNew := store.Layout().Of(old.OrderID).ClaimEntry(old)
	if _, err := js.PublishMsg(ctx, claim, expectNew); err != nil {
		t.Fatal(err)
	}
	original, err := newStoreOrder(store, old, "req-old")
	if err != nil {
		t.Fatal(err)
	}
	event, err := store.Layout().EncodeEvent(original, "req-old")
	if err != nil {
		t.Fatal(err)
	}
	event.Header.Del(nats.MsgIdHdr)
	ack, err := js.PublishMsg(ctx, event)
	if err != nil {
		t.Fatal(err)
	}
	late, err := store.Create(ctx, newOrder("c1", "", "req-old"))
	if err != nil || !late.Duplicate || late.Order.GetOrderId() != old.OrderID || late.Order.GetRevision() != ack.Sequence {
		t.Fatalf("retry after the duplicate window: %+v, %v; want the original %s at %d", late, err, old.OrderID, ack.Sequence)
	}
	if _, err := store.Create(ctx, newOrder("c2", "", "req-1")); !errors.Is(err, ErrRequestIDReused) {
		t.Fatalf("another customer's create with request id req-1: %v, want ErrRequestIDReused", err)
	}
	if _, err := store.Create(ctx, newOrder("c1", "taken", "req-2")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, newOrder("c2", "taken", "req-3")); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("create of an id another customer holds: %v, want ErrAlreadyExists", err)
	}
	// A create that died after its claim is completed by its retry.
	p := store.Layout().Of("half-made")
	msg, expectNew := p.ClaimEntry(OrderKey{CustomerID: "c1", OrderID: "half-made"})
	if _, err := js.PublishMsg(ctx, msg, expectNew); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, "half-made"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a claimed id with no event: %v, want ErrNotFound", err)
	}
	done, err := store.Create(ctx, newOrder("c1", "half-made", "req-4"))
	if err != nil || done.Duplicate {
		t.Fatalf("retry of a create that died after its claim: %+v, %v", done, err)
	}
}

// ListOrders across partitions lists every order once, in one order, page
// after page, for all customers and for one, while orders move between
// pages.
func TestListAcrossPartitionsVisitsEveryOrderOnce(t *testing.T) {
	store, _ := partitionedStore(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const orders = 40
	for i := range orders {
		customer := "c" + strconv.Itoa(i%2)
		if _, err := store.Create(ctx, newOrder(customer, fmt.Sprintf("o-%02d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	approved := []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ordersv1.OrderStatus_ORDER_STATUS_PAID}
	for i := 0; i < orders; i += 2 {
		if _, err := store.Transition(ctx, Change{OrderID: fmt.Sprintf("o-%02d", i), To: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		req  ListRequest
		want int
	}{
		{"every order", ListRequest{PageSize: 7}, orders},
		{"one customer", ListRequest{CustomerID: "c1", PageSize: 3}, orders / 2},
		{"approved or paid, moving to paid", ListRequest{Statuses: approved, PageSize: 4}, orders / 2},
		{"one customer's approved or paid", ListRequest{CustomerID: "c0", Statuses: approved, PageSize: 2}, orders / 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen := map[string]int{}
			req := c.req
			for pages := 0; ; pages++ {
				if pages > orders {
					t.Fatal("the listing does not end")
				}
				page, err := store.List(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Orders) > req.PageSize {
					t.Fatalf("page of %d orders, size %d", len(page.Orders), req.PageSize)
				}
				for _, o := range page.Orders {
					seen[o.GetOrderId()]++
					// Orders move while the listing goes on: an approved
					// one already listed becomes paid, which must not list
					// it again.
					if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
						if _, err := store.Transition(ctx, Change{OrderID: o.GetOrderId(), To: ordersv1.OrderStatus_ORDER_STATUS_PAID}); err != nil {
							t.Fatal(err)
						}
					}
				}
				if page.Next == nil {
					break
				}
				if len(page.Next) != 3 {
					t.Fatalf("cursor over %d partitions, want 3", len(page.Next))
				}
				req.After = page.Next
			}
			if len(seen) != c.want {
				t.Errorf("listed %d orders, want %d", len(seen), c.want)
			}
			for id, times := range seen {
				if times != 1 {
					t.Errorf("order %s listed %d times", id, times)
				}
			}
		})
	}
	if _, err := store.List(ctx, ListRequest{PageSize: 5, After: Cursor{1, 2}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a cursor of two partitions on three: %v, want ErrInvalidArgument", err)
	}
}

// A node started with another number of partitions, or in layout 2 on
// partitioned orders, or in layout 3 on orders still in ORDERS, refuses
// them and names the way out.
func TestLayoutsRefuseStreamsTheyDoNotRead(t *testing.T) {
	js, log := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(l Layout) error {
		store, err := New(js, Options{Layout: l, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return store.Ready(ctx)
	}
	if err := open(Layout{}); err != nil {
		t.Fatal(err)
	}
	store, err := New(js, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, newOrder("c1", "o1", "")); err != nil {
		t.Fatal(err)
	}
	if err := open(Layout{Partitions: 3}); !errors.Is(err, ErrLayoutOutdated) || !contains(err, "ordersd migrate") {
		t.Fatalf("layout 3 on events in ORDERS: %v, want ErrLayoutOutdated naming ordersd migrate", err)
	}
	for _, name := range []string{StreamName, IndexStreamName} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := open(Layout{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := open(Layout{Partitions: 4}); !errors.Is(err, ErrLayoutOutdated) || !contains(err, "--partitions 3") {
		t.Fatalf("4 partitions on a deployment of 3: %v, want ErrLayoutOutdated naming --partitions 3", err)
	}
	if err := open(Layout{}); !errors.Is(err, ErrLayoutOutdated) || !contains(err, "--partitions 3") {
		t.Fatalf("layout 2 on partitioned orders: %v, want ErrLayoutOutdated naming --partitions 3", err)
	}
	stream, err := js.Stream(ctx, Partition{Number: 1, Of: 3}.Stream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.DenyPurge || cfg.DenyDelete || cfg.Metadata[MetadataLayout] != PartitionedLayout ||
		cfg.Metadata[MetadataPartitions] != "3" || cfg.Metadata[MetadataPartition] != "1" {
		t.Errorf("partition stream config: deny purge %v, delete %v, metadata %v", cfg.DenyPurge, cfg.DenyDelete, cfg.Metadata)
	}
}

// newStoreOrder is the created state store would make of k's order for
// requestID.
func newStoreOrder(store *Store, k OrderKey, requestID string) (*ordersv1.Order, error) {
	in := newOrder(k.CustomerID, k.OrderID, requestID)
	order, _, err := store.createdEvent(in)
	return order, err
}

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

// A partition reads only its own orders' subjects: a message another
// program put under ORDERS.<k> for an order whose id maps elsewhere is no
// order's event there, and layout 2's subjects are no partition's.
func TestPartitionsReadOnlyTheirOwnSubjects(t *testing.T) {
	const n = 3
	id := "order-7"
	home := Partition{Number: PartitionOf(id, n), Of: n}
	other := Partition{Number: (home.Number + 1) % n, Of: n}
	subject, err := home.EventSubject(ordersv1.OrderStatus_ORDER_STATUS_PAID, OrderKey{CustomerID: "c1", OrderID: id})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := home.SubjectStatus(subject); !ok || st != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("%s in its own partition: %v %v", subject, st, ok)
	}
	foreign := strings.Replace(subject, "ORDERS."+strconv.Itoa(home.Number)+".", "ORDERS."+strconv.Itoa(other.Number)+".", 1)
	for _, c := range []struct {
		p       Partition
		subject string
	}{{other, foreign}, {home, "ORDERS.paid.c1." + id}, {Partition{}, subject}, {home, home.ClaimSubject(id)}} {
		if _, ok := c.p.SubjectStatus(c.subject); ok {
			t.Errorf("%s read %s as an order event", c.p, c.subject)
		}
	}
	if got, err := other.FilterSubjects(Filter{}); err != nil || len(got) != 1 || got[0] != other.Subjects() {
		t.Errorf("every event of %s: %v, %v; want only its events, not its claims", other, got, err)
	}
}

// PartitionOf is a contract with other programs (docs/subject-layout.md
// names the function and gives an example): FNV-1a of 32 bits, whose
// published test vectors pin it, modulo N.
func TestPartitionOfIsFNV1aModuloN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		hash uint32 // FNV-1a 32 of id, from the reference test vectors
	}{
		{"a", 0xe40c292c},
		{"foobar", 0xbf9cf968},
	} {
		for _, n := range []int{1, 3, 7, MaxPartitions} {
			if got, want := PartitionOf(tc.id, n), int(tc.hash%uint32(n)); got != want {
				t.Errorf("PartitionOf(%q, %d) = %d, want %d", tc.id, n, got, want)
			}
		}
	}
	if got := (Layout{Partitions: 3}).Of("order-1001").Stream(); got != "ORDERS_1" {
		t.Errorf("order-1001 of 3 partitions is in %s; docs/subject-layout.md says ORDERS_1", got)
	}
}
