package server_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

const (
	created   = ordersv1.OrderStatus_ORDER_STATUS_CREATED
	approved  = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
	rejected  = ordersv1.OrderStatus_ORDER_STATUS_REJECTED
	paid      = ordersv1.OrderStatus_ORDER_STATUS_PAID
	shipped   = ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
	cancelled = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
)

// Every status an order can reach, and the transitions that lead there from created.
var pathTo = map[ordersv1.OrderStatus][]ordersv1.OrderStatus{
	created:   nil,
	approved:  {approved},
	rejected:  {rejected},
	paid:      {approved, paid},
	shipped:   {approved, paid, shipped},
	cancelled: {cancelled},
}

func TestCreateOrderStoresTheCreatedEvent(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	res, err := n.client.CreateOrder(testCtx(t), validCreate("req-create-1"))
	if err != nil {
		t.Fatal(err)
	}
	order := res.GetOrder()
	if res.GetDuplicate() || order.GetStatus() != created || order.GetTotalMinor() != 2*1250+99 ||
		order.GetRevision() == 0 || order.GetCreateTime() == nil || !eventstore.ValidToken(order.GetOrderId(), 64) {
		t.Fatalf("unexpected response %v", res)
	}
	raw, stored := n.storedOrder(t, order.GetRevision())
	if want, _ := eventstore.EventSubject(created, eventstore.KeyOf(order)); raw.Subject != want {
		t.Errorf("subject = %q, want %q", raw.Subject, want)
	}
	if got := raw.Header.Get(eventstore.HeaderRequestID); got != "req-create-1" {
		t.Errorf("request id header = %q", got)
	}
	if got := raw.Header.Get(eventstore.HeaderEventType); got != "created" {
		t.Errorf("event type header = %q", got)
	}
	stored.Revision = order.GetRevision()
	if !proto.Equal(stored, order) {
		t.Errorf("stored %v\nanswered %v", stored, order)
	}
	got, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetOrder(), order) {
		t.Errorf("GetOrder = %v, want %v", got.GetOrder(), order)
	}
}

func TestCreateOrderWithOrderID(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	req := validCreate("")
	req.OrderId = "order-A_1"
	res, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOrder().GetOrderId() != "order-A_1" {
		t.Fatalf("order id = %q", res.GetOrder().GetOrderId())
	}
	// The id is taken now: another create without the same request id is refused.
	_, err = n.client.CreateOrder(testCtx(t), req)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	if got := n.orderMsgs(t, eventstore.KeyOf(res.GetOrder())); got != 1 {
		t.Fatalf("%d events stored, want 1", got)
	}
}

func TestLifeCycleHappyPaths(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for final, path := range pathTo {
		t.Run(final.String(), func(t *testing.T) {
			order := n.create(t)
			revisions := []uint64{order.GetRevision()}
			for i, to := range path {
				got, dup, err := n.transition(testCtx(t), to, order.GetOrderId(), fmt.Sprintf("req-%d", i), order.GetRevision())
				if err != nil {
					t.Fatalf("%v: %v", to, err)
				}
				if dup || got.GetStatus() != to || got.GetRevision() <= order.GetRevision() {
					t.Fatalf("%v answered %v (duplicate %v)", to, got, dup)
				}
				raw, stored := n.storedOrder(t, got.GetRevision())
				if want, _ := eventstore.EventSubject(to, eventstore.KeyOf(order)); raw.Subject != want {
					t.Errorf("subject %q, want %q", raw.Subject, want)
				}
				stored.Revision = got.GetRevision()
				if !proto.Equal(stored, got) {
					t.Errorf("stored %v\nanswered %v", stored, got)
				}
				if (to == rejected || to == cancelled) != (got.GetReason() != "") {
					t.Errorf("%v: reason %q", to, got.GetReason())
				}
				order = got
				revisions = append(revisions, got.GetRevision())
			}
			current, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(current.GetOrder(), order) {
				t.Errorf("GetOrder = %v, want %v", current.GetOrder(), order)
			}
			events := n.history(t, order.GetOrderId())
			if len(events) != len(revisions) {
				t.Fatalf("history has %d events, want %d", len(events), len(revisions))
			}
			for i, ev := range events {
				if ev.GetSequence() != revisions[i] || ev.GetOrder().GetRevision() != revisions[i] || ev.GetPublishTime() == nil {
					t.Errorf("event %d = %v, want revision %d", i, ev, revisions[i])
				}
			}
			if got := events[len(events)-1].GetOrder(); !proto.Equal(got, order) {
				t.Errorf("last event %v, want %v", got, order)
			}
		})
	}
}

func TestIdempotentCreateRetry(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for _, withID := range []bool{false, true} {
		t.Run(fmt.Sprintf("with order id %v", withID), func(t *testing.T) {
			req := validCreate(fmt.Sprintf("retry-me-%v", withID))
			if withID {
				req.OrderId = "retried-order"
			}
			first, err := n.client.CreateOrder(testCtx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			before := n.streamMsgs(t, "")
			second, err := n.client.CreateOrder(testCtx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if !second.GetDuplicate() || first.GetDuplicate() {
				t.Fatalf("duplicate flags: first %v, second %v", first.GetDuplicate(), second.GetDuplicate())
			}
			if !proto.Equal(first.GetOrder(), second.GetOrder()) {
				t.Fatalf("retry answered %v, want %v", second.GetOrder(), first.GetOrder())
			}
			if after := n.streamMsgs(t, ""); after != before {
				t.Fatalf("retry stored %d new messages", after-before)
			}
			if got := n.orderMsgs(t, eventstore.KeyOf(first.GetOrder())); got != 1 {
				t.Fatalf("%d events for the order, want 1", got)
			}
		})
	}
}

func TestIdempotentTransitionRetry(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order := n.create(t)
	id := order.GetOrderId()
	first, _, err := n.transition(testCtx(t), approved, id, "approve-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The retry comes back right away, with and without the revision it was based on.
	for _, expected := range []uint64{0, order.GetRevision()} {
		again, dup, err := n.transition(testCtx(t), approved, id, "approve-1", expected)
		if err != nil || !dup || !proto.Equal(again, first) {
			t.Fatalf("retry with expected %d: %v, duplicate %v, err %v", expected, again, dup, err)
		}
	}
	// The retry comes back after the order has moved on: still the original answer.
	if _, _, err := n.transition(testCtx(t), paid, id, "pay-1", 0); err != nil {
		t.Fatal(err)
	}
	again, dup, err := n.transition(testCtx(t), approved, id, "approve-1", 0)
	if err != nil || !dup || !proto.Equal(again, first) {
		t.Fatalf("late retry: %v, duplicate %v, err %v", again, dup, err)
	}
	if got := n.orderMsgs(t, eventstore.KeyOf(order)); got != 3 {
		t.Fatalf("%d events, want 3 (created, approved, paid)", got)
	}
	// The same request id for a different change is a client bug, not a retry.
	_, _, err = n.transition(testCtx(t), shipped, id, "pay-1", 0)
	assertFieldViolation(t, err, "request_id")
}

func TestRequestIDOfAnotherOrderIsRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	req := validCreate("shared-request")
	req.OrderId = "first-order"
	if _, err := n.client.CreateOrder(testCtx(t), req); err != nil {
		t.Fatal(err)
	}
	req.OrderId = "second-order"
	_, err := n.client.CreateOrder(testCtx(t), req)
	assertFieldViolation(t, err, "request_id")
	if got := n.orderMsgs(t, eventstore.OrderKey{CustomerID: req.GetCustomerId(), OrderID: "second-order"}); got != 0 {
		t.Fatalf("%d events stored for second-order", got)
	}
}

func TestConcurrentTransitionsExactlyOneWins(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order := n.create(t)
	const calls = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		codesOf = map[codes.Code]int{}
	)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := approved
			if i%2 == 1 {
				to = cancelled
			}
			_, _, err := n.transition(testCtx(t), to, order.GetOrderId(), fmt.Sprintf("racer-%d", i), order.GetRevision())
			mu.Lock()
			codesOf[status.Code(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codesOf[codes.OK] != 1 || codesOf[codes.OK]+codesOf[codes.Aborted]+codesOf[codes.FailedPrecondition] != calls {
		t.Fatalf("outcomes %v: want exactly one OK, the rest ABORTED or FAILED_PRECONDITION", codesOf)
	}
	if events := n.history(t, order.GetOrderId()); len(events) != 2 {
		t.Fatalf("history has %d events, want 2", len(events))
	}
}

func TestStaleExpectedRevisionIsAborted(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order := n.create(t)
	approvedOrder, _, err := n.transition(testCtx(t), approved, order.GetOrderId(), "", order.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = n.transition(testCtx(t), cancelled, order.GetOrderId(), "", order.GetRevision())
	if status.Code(err) != codes.Aborted {
		t.Fatalf("cancel on a stale revision: %v, want ABORTED", err)
	}
	if _, _, err := n.transition(testCtx(t), cancelled, order.GetOrderId(), "", approvedOrder.GetRevision()); err != nil {
		t.Fatalf("cancel on the current revision: %v", err)
	}
}

func TestIllegalTransitionsAreRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	all := []ordersv1.OrderStatus{approved, rejected, paid, shipped, cancelled}
	for from, path := range pathTo {
		for _, to := range all {
			if eventstore.CanTransition(from, to) {
				continue
			}
			t.Run(fmt.Sprintf("%v to %v", from, to), func(t *testing.T) {
				t.Parallel()
				order := n.create(t)
				for _, step := range path {
					if _, _, err := n.transition(testCtx(t), step, order.GetOrderId(), "", 0); err != nil {
						t.Fatal(err)
					}
				}
				before := n.orderMsgs(t, eventstore.KeyOf(order))
				_, _, err := n.transition(testCtx(t), to, order.GetOrderId(), "illegal", 0)
				st := status.Convert(err)
				if st.Code() != codes.FailedPrecondition {
					t.Fatalf("got %v, want FAILED_PRECONDITION", err)
				}
				if len(st.Details()) != 1 {
					t.Errorf("want a PreconditionFailure detail, got %v", st.Details())
				}
				if after := n.orderMsgs(t, eventstore.KeyOf(order)); after != before {
					t.Fatalf("an illegal transition stored %d events", after-before)
				}
			})
		}
	}
}

func TestUnknownOrderIsNotFound(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := testCtx(t)
	_, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetOrder: %v", err)
	}
	for _, to := range []ordersv1.OrderStatus{approved, rejected, paid, shipped, cancelled} {
		if _, _, err := n.transition(ctx, to, "nope", "r", 0); status.Code(err) != codes.NotFound {
			t.Errorf("%v: %v", to, err)
		}
	}
	stream, err := n.client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "nope"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetOrderHistory: %v", err)
	}
}

func TestBadInputIsRefusedAndNothingIsPublished(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	existing := n.create(t)
	withCreate := func(edit func(*ordersv1.CreateOrderRequest)) *ordersv1.CreateOrderRequest {
		req := validCreate("")
		edit(req)
		return req
	}
	item := func(sku string, q, p int64) []*ordersv1.LineItem {
		return []*ordersv1.LineItem{{Sku: sku, Quantity: q, UnitPriceMinor: p}}
	}
	manyItems := make([]*ordersv1.LineItem, 101)
	for i := range manyItems {
		manyItems[i] = &ordersv1.LineItem{Sku: "X", Quantity: 1, UnitPriceMinor: 1}
	}
	unsafeIDs := []string{"a.b", "a*", "a>", ">", "a b", " ", "ünï", "a\nb", "a/b", "a\x00", "a\u200bb", strings.Repeat("x", 65)}

	type badCall struct {
		name  string
		field string
		call  func() error
	}
	var cases []badCall
	create := func(name, field string, req *ordersv1.CreateOrderRequest) {
		cases = append(cases, badCall{name, field, func() error { _, err := n.client.CreateOrder(testCtx(t), req); return err }})
	}
	create("an empty create request", "customer_id", &ordersv1.CreateOrderRequest{})
	create("no items", "items", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = nil }))
	create("too many items", "items", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = manyItems }))
	create("an empty sku", "items[0].sku", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("", 1, 1) }))
	create("an oversized sku", "items[0].sku", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item(strings.Repeat("s", 65), 1, 1) }))
	create("a sku with a control character", "items[0].sku", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("a\tb", 1, 1) }))
	create("a zero quantity", "items[0].quantity", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("A", 0, 1) }))
	create("a negative quantity", "items[0].quantity", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("A", -5, 1) }))
	create("a huge quantity", "items[0].quantity", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("A", 1<<62, 1) }))
	create("a negative price", "items[0].unit_price_minor", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("A", 1, -1) }))
	create("a price that would overflow the total", "items[0].unit_price_minor", withCreate(func(r *ordersv1.CreateOrderRequest) { r.Items = item("A", 10_000, 1<<62) }))
	create("a lower-case currency", "currency_code", withCreate(func(r *ordersv1.CreateOrderRequest) { r.CurrencyCode = "eur" }))
	create("a long currency", "currency_code", withCreate(func(r *ordersv1.CreateOrderRequest) { r.CurrencyCode = "EURO" }))
	for _, bad := range unsafeIDs {
		create(fmt.Sprintf("order id %q", bad), "order_id", withCreate(func(r *ordersv1.CreateOrderRequest) { r.OrderId = bad }))
		create(fmt.Sprintf("customer id %q", bad), "customer_id", withCreate(func(r *ordersv1.CreateOrderRequest) { r.CustomerId = bad }))
		create(fmt.Sprintf("request id %q", bad), "request_id", withCreate(func(r *ordersv1.CreateOrderRequest) { r.RequestId = bad + strings.Repeat("y", 64) }))
		cases = append(cases,
			badCall{fmt.Sprintf("GetOrder of %q", bad), "order_id", func() error {
				_, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: bad})
				return err
			}},
			badCall{fmt.Sprintf("ApproveOrder of %q", bad), "order_id", func() error {
				_, _, err := n.transition(testCtx(t), approved, bad, "", 0)
				return err
			}},
			badCall{fmt.Sprintf("CancelOrder with request id %q", bad), "request_id", func() error {
				_, _, err := n.transition(testCtx(t), cancelled, existing.GetOrderId(), bad+strings.Repeat("y", 64), 0)
				return err
			}},
			badCall{fmt.Sprintf("GetOrderHistory of %q", bad), "order_id", func() error {
				stream, err := n.client.GetOrderHistory(testCtx(t), &ordersv1.GetOrderHistoryRequest{OrderId: bad})
				if err == nil {
					_, err = stream.Recv()
				}
				return err
			}},
		)
	}
	cases = append(cases,
		badCall{"an empty order id", "order_id", func() error {
			_, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{})
			return err
		}},
		badCall{"a reject without a reason", "reason", func() error {
			_, err := n.client.RejectOrder(testCtx(t), &ordersv1.RejectOrderRequest{OrderId: existing.GetOrderId()})
			return err
		}},
		badCall{"an oversized reason", "reason", func() error {
			_, err := n.client.CancelOrder(testCtx(t), &ordersv1.CancelOrderRequest{OrderId: existing.GetOrderId(), Reason: strings.Repeat("r", 513)})
			return err
		}},
		badCall{"a reason with a newline", "reason", func() error {
			_, err := n.client.RejectOrder(testCtx(t), &ordersv1.RejectOrderRequest{OrderId: existing.GetOrderId(), Reason: "a\nb"})
			return err
		}},
	)

	before := n.streamMsgs(t, "")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertFieldViolation(t, c.call(), c.field)
		})
	}
	if after := n.streamMsgs(t, ""); after != before {
		t.Fatalf("bad input stored %d messages", after-before)
	}
}

// assertFieldViolation checks that err is INVALID_ARGUMENT with a
// google.rpc.BadRequest naming field.
func assertFieldViolation(t *testing.T, err error, field string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT", err)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
		}
	}
	t.Fatalf("no field violation for %q in %v", field, st.Details())
}
