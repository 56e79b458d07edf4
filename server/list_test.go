package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// createFor makes an order of customer and fails the test if it cannot.
func (n *testNode) createFor(t *testing.T, customer string) *ordersv1.Order {
	t.Helper()
	req := validCreate("")
	req.CustomerId = customer
	res, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return res.GetOrder()
}

// listAll pages through ListOrders and returns every order listed. Each
// page holds exactly page_size orders (50 when 0) when another follows,
// and at most that on the last: no test that uses it stores enough events
// for a page to reach the scan budget and end early. between, if set, runs
// after each page but the last, with that page's orders.
func (n *testNode) listAll(t *testing.T, req *ordersv1.ListOrdersRequest, between func(page []*ordersv1.Order)) []*ordersv1.Order {
	t.Helper()
	size := int(req.GetPageSize())
	if size == 0 {
		size = eventstore.DefaultPageSize
	}
	var all []*ordersv1.Order
	for page := 0; ; page++ {
		res, err := n.client.ListOrders(testCtx(t), req)
		if err != nil {
			t.Fatalf("ListOrders page %d: %v", page, err)
		}
		got := len(res.GetOrders())
		if got > size || (got != size && res.GetNextPageToken() != "") {
			t.Fatalf("page %d holds %d orders (next page token %q), want page_size %d", page, got, res.GetNextPageToken(), size)
		}
		all = append(all, res.GetOrders()...)
		if res.GetNextPageToken() == "" {
			return all
		}
		if between != nil {
			between(res.GetOrders())
		}
		req.PageToken = res.GetNextPageToken()
	}
}

func ids(orders []*ordersv1.Order) []string {
	var out []string
	for _, o := range orders {
		out = append(out, o.GetOrderId())
	}
	return out
}

// A customer's orders are listed oldest first, in their current state,
// and no other customer's order is among them.
func TestListOrdersOfOneCustomer(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	var want []*ordersv1.Order
	for i := range 7 {
		want = append(want, n.createFor(t, "alice"))
		n.createFor(t, fmt.Sprintf("bob-%d", i))
	}
	// Move one along: it is listed as it is now, in the same place.
	moved, _, err := n.transition(testCtx(t), approved, want[2].GetOrderId(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := n.listAll(t, &ordersv1.ListOrdersRequest{CustomerId: "alice", PageSize: 3}, nil)
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("listed %v, want %v", ids(got), ids(want))
	}
	if got[2].GetStatus() != approved || got[2].GetRevision() != moved.GetRevision() {
		t.Errorf("order %s listed as %v at revision %d, want APPROVED at %d", got[2].GetOrderId(), got[2].GetStatus(), got[2].GetRevision(), moved.GetRevision())
	}
	// The page size defaults to 50, and one page then holds all.
	res, err := n.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "alice"})
	if err != nil || len(res.GetOrders()) != 7 || res.GetNextPageToken() != "" {
		t.Fatalf("default page: %d orders, token %q, %v", len(res.GetOrders()), res.GetNextPageToken(), err)
	}
	if res, err := n.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "nobody"}); err != nil || len(res.GetOrders()) != 0 || res.GetNextPageToken() != "" {
		t.Fatalf("unknown customer: %v, %v", res, err)
	}
}

// Listing by status returns the orders whose current status it is, across
// customers, and leaves out those that moved on.
func TestListOrdersByStatus(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	var approvedNow []string
	for i := range 9 {
		o := n.createFor(t, fmt.Sprintf("c-%d", i%3))
		if _, _, err := n.transition(testCtx(t), approved, o.GetOrderId(), "", 0); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // moved on: no longer approved
			if _, _, err := n.transition(testCtx(t), paid, o.GetOrderId(), "", 0); err != nil {
				t.Fatal(err)
			}
			continue
		}
		approvedNow = append(approvedNow, o.GetOrderId())
	}
	got := n.listAll(t, &ordersv1.ListOrdersRequest{Statuses: []ordersv1.OrderStatus{approved}, PageSize: 2}, nil)
	if !slices.Equal(ids(got), approvedNow) {
		t.Fatalf("APPROVED: listed %v, want %v", ids(got), approvedNow)
	}
	for _, o := range got {
		if o.GetStatus() != approved {
			t.Errorf("%s listed as %v", o.GetOrderId(), o.GetStatus())
		}
	}
	both := n.listAll(t, &ordersv1.ListOrdersRequest{CustomerId: "c-1", Statuses: []ordersv1.OrderStatus{approved, paid}}, nil)
	for _, o := range both {
		if o.GetCustomerId() != "c-1" || (o.GetStatus() != approved && o.GetStatus() != paid) {
			t.Errorf("c-1 APPROVED or PAID: listed %s of %s, %v", o.GetOrderId(), o.GetCustomerId(), o.GetStatus())
		}
	}
	if len(both) != 3 {
		t.Errorf("c-1 APPROVED or PAID: %d orders, want 3", len(both))
	}
}

// Paging while orders are created and moved along concurrently lists
// every order that existed before the first page exactly once, and never
// lists one twice.
func TestListOrdersPagesAcrossConcurrentWrites(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	var before []string
	for range 40 {
		before = append(before, n.createFor(t, "carol").GetOrderId())
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // new orders, and old ones approved, while the listing pages
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			req := validCreate("")
			req.CustomerId = "carol"
			if _, err := n.client.CreateOrder(ctx, req); err != nil && ctx.Err() == nil {
				t.Errorf("concurrent create: %v", err)
				return
			}
			if i < len(before) {
				_, _, _ = n.transition(ctx, approved, before[i], "", 0)
			}
		}
	}()
	got := n.listAll(t, &ordersv1.ListOrdersRequest{CustomerId: "carol", PageSize: 7}, nil)
	cancel()
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids(got) {
		if seen[id] {
			t.Fatalf("order %s listed twice", id)
		}
		seen[id] = true
	}
	for _, id := range before {
		if !seen[id] {
			t.Errorf("order %s, created before the listing began, was skipped", id)
		}
	}
	if !slices.Equal(ids(got)[:len(before)], before) {
		t.Errorf("not oldest first: %v", ids(got)[:len(before)])
	}
}

// A page token is opaque and tamper-evident, and bound to its query.
func TestListOrdersRefusesBadPageTokens(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for range 3 {
		n.createFor(t, "dave")
	}
	first, err := n.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "dave", PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, %v", first, err)
	}
	token := first.GetNextPageToken()
	flipped := []byte(token)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '.' || flipped[len(flipped)/2] > 'z' {
		flipped[len(flipped)/2] = 'A'
	}
	for name, req := range map[string]*ordersv1.ListOrdersRequest{
		"a flipped character":   {CustomerId: "dave", PageToken: string(flipped)},
		"not base64":            {CustomerId: "dave", PageToken: "%%%"},
		"truncated":             {CustomerId: "dave", PageToken: token[:len(token)-2]},
		"another customer":      {CustomerId: "erin", PageToken: token},
		"other statuses":        {CustomerId: "dave", Statuses: []ordersv1.OrderStatus{created}, PageToken: token},
		"page size over 1000":   {CustomerId: "dave", PageSize: 1001},
		"negative page size":    {CustomerId: "dave", PageSize: -1},
		"a customer with a dot": {CustomerId: "a.b"},
		"an unknown status":     {Statuses: []ordersv1.OrderStatus{99}},
	} {
		if _, err := n.client.ListOrders(testCtx(t), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	// The genuine token, with another page size, goes on.
	next, err := n.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "dave", PageSize: 5, PageToken: token})
	if err != nil || len(next.GetOrders()) != 2 || next.GetNextPageToken() != "" {
		t.Fatalf("second page: %v, %v", next, err)
	}
}

// Paging while orders are created and move between pages lists no order
// twice, with two and three statuses, for one customer and across
// customers; an order that is in the requested statuses for the whole
// listing, or that never leaves them once it enters them (before or during
// the listing), is listed exactly once. After each page, every order on it
// moves one step on (APPROVED to PAID stays in the statuses: a listing that
// follows the events that put orders in a status finds such an order
// again), the oldest order not yet listed that can be cancelled is, and a
// new order is created and approved.
func TestListOrdersPagingWhileOrdersMove(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		customer string
		statuses []ordersv1.OrderStatus
	}{
		{"one customer, APPROVED or PAID", "frank", []ordersv1.OrderStatus{approved, paid}},
		{"across customers, APPROVED or PAID", "", []ordersv1.OrderStatus{approved, paid}},
		{"one customer, CREATED, APPROVED or PAID", "frank", []ordersv1.OrderStatus{created, approved, paid}},
		{"across customers, CREATED, APPROVED or PAID", "", []ordersv1.OrderStatus{created, approved, paid}},
		{"one customer, APPROVED, SHIPPED or CANCELLED", "frank", []ordersv1.OrderStatus{approved, shipped, cancelled}},
		{"across customers, APPROVED, SHIPPED or CANCELLED", "", []ordersv1.OrderStatus{approved, shipped, cancelled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkPagingWhileOrdersMove(t, startNode(t), tc.customer, tc.statuses)
		})
	}
}

func checkPagingWhileOrdersMove(t *testing.T, n *testNode, customer string, statuses []ordersv1.OrderStatus) {
	inFilter := func(st ordersv1.OrderStatus) bool { return slices.Contains(statuses, st) }
	outside := func(st ordersv1.OrderStatus) bool { return !inFilter(st) }
	var (
		order   []string                              // the orders the listing may list, by creation
		history = map[string][]ordersv1.OrderStatus{} // each one's statuses, from CREATED on
		atStart = map[string]int{}                    // for those that existed when the listing began: their status then, as an index into history
	)
	current := func(id string) ordersv1.OrderStatus { return history[id][len(history[id])-1] }
	move := func(id string, to ordersv1.OrderStatus) {
		t.Helper()
		if _, _, err := n.transition(testCtx(t), to, id, "", 0); err != nil {
			t.Fatalf("%v %s: %v", to, id, err)
		}
		history[id] = append(history[id], to)
	}
	create := func() string {
		t.Helper()
		owner := customer
		if owner == "" {
			owner = fmt.Sprintf("c-%d", len(order)%4)
		}
		o := n.createFor(t, owner)
		order = append(order, o.GetOrderId())
		history[o.GetOrderId()] = []ordersv1.OrderStatus{created}
		if customer != "" { // another customer's order, approved, never to be listed
			other := n.createFor(t, fmt.Sprintf("other-%d", len(order)))
			if _, _, err := n.transition(testCtx(t), approved, other.GetOrderId(), "", 0); err != nil {
				t.Fatal(err)
			}
		}
		return o.GetOrderId()
	}
	// 24 orders, all created before any moves on, so that the events of
	// each status follow one another. By i%6 they end up CREATED,
	// APPROVED, PAID, APPROVED, SHIPPED and CANCELLED.
	for range 24 {
		create()
	}
	for _, step := range []struct {
		to    ordersv1.OrderStatus
		which []int
	}{{approved, []int{1, 2, 3, 4}}, {paid, []int{2, 4}}, {shipped, []int{4}}, {cancelled, []int{5}}} {
		for i, id := range order {
			if slices.Contains(step.which, i%6) {
				move(id, step.to)
			}
		}
	}
	for _, id := range order {
		atStart[id] = len(history[id]) - 1
	}

	onward := map[ordersv1.OrderStatus]ordersv1.OrderStatus{created: approved, approved: paid, paid: shipped}
	listedSoFar := map[string]bool{}
	pages := 1
	got := n.listAll(t, &ordersv1.ListOrdersRequest{CustomerId: customer, Statuses: statuses, PageSize: 3}, func(page []*ordersv1.Order) {
		pages++
		for _, o := range page {
			listedSoFar[o.GetOrderId()] = true
			if next, ok := onward[current(o.GetOrderId())]; ok {
				move(o.GetOrderId(), next)
			}
		}
		for _, id := range order {
			if st := current(id); !listedSoFar[id] && (st == created || st == approved) {
				move(id, cancelled)
				break
			}
		}
		move(create(), approved)
	})

	listed := map[string]int{}
	for _, o := range got {
		listed[o.GetOrderId()]++
		if listed[o.GetOrderId()] == 2 {
			t.Errorf("order %s listed twice (%v)", o.GetOrderId(), history[o.GetOrderId()])
		}
		if !inFilter(o.GetStatus()) {
			t.Errorf("order %s listed as %v, not one of %v", o.GetOrderId(), o.GetStatus(), statuses)
		}
		if history[o.GetOrderId()] == nil {
			t.Errorf("order %s of customer %s listed, not one of %q's", o.GetOrderId(), o.GetCustomerId(), customer)
		}
	}
	stayed, entered, moved := 0, 0, 0
	for _, id := range order {
		h := history[id]
		start, existed := atStart[id]
		if !existed || len(h) > start+1 {
			moved++
		}
		switch first := slices.IndexFunc(h, inFilter); {
		case existed && !slices.ContainsFunc(h[start:], outside):
			stayed++
			if listed[id] != 1 {
				t.Errorf("order %s, in %v for the whole listing (%v), listed %d times", id, statuses, h, listed[id])
			}
		case first >= 0 && !slices.ContainsFunc(h[first:], outside):
			entered++
			if listed[id] != 1 {
				t.Errorf("order %s, never out of %v since it entered them (%v), listed %d times", id, statuses, h, listed[id])
			}
		}
	}
	// The test means something only if orders did move between pages, some
	// stayed in the statuses throughout and some entered them.
	if moved < 5 || stayed < 4 || entered < 1 {
		t.Fatalf("%d orders moved during the listing, %d stayed in %v throughout and %d entered them: too few to test paging", moved, stayed, statuses, entered)
	}
	t.Logf("%d orders listed over %d pages; %d moved during the listing, %d stayed in %v throughout, %d entered them and stayed", len(got), pages, moved, stayed, statuses, entered)
}

// A listing by status across customers examines at most ListScanBudget
// candidates per page: past that many orders that moved on, a page ends
// early, empty but with a token, and the next page goes on from there and
// finds the order behind them.
func TestListOrdersByStatusEndsAPageAtTheScanBudget(t *testing.T) {
	// Not parallel: its burst of 4,000 writes would slow the other tests'
	// calls past their 2 s operation timeout on a loaded machine. A page
	// that reads ListScanBudget candidates one after the other may take
	// longer under -race than those 2 s too; the default (--nats-timeout)
	// is 5 s.
	n := startNodeOn(t, testsupport.StartNATS(t, testsupport.InProcessOnly), func(o *node.ServiceOptions) { o.OpTimeout = 20 * time.Second })
	// ListScanBudget CREATED events of orders that are APPROVED now, then
	// one order still CREATED. They are written through the store's
	// pipelined creates and transitions, 100 in flight at a time (as
	// CreateOrders and the reviewer write): thousands of RPCs one by one
	// would take long under -race.
	for range eventstore.ListScanBudget / 100 {
		var creates []*eventstore.PendingCreate
		for i := range 100 {
			p, err := n.store.CreateAsync(testCtx(t), eventstore.NewOrder{CustomerID: fmt.Sprintf("c-%d", i%10), Items: validCreate("").GetItems(), CurrencyCode: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			creates = append(creates, p)
		}
		var approvals []*eventstore.PendingTransition
		for _, p := range creates {
			res, err := p.Wait(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			a, err := n.store.TransitionFrom(testCtx(t), res.Order, eventstore.Change{OrderID: res.Order.GetOrderId(), To: approved})
			if err != nil {
				t.Fatal(err)
			}
			approvals = append(approvals, a)
		}
		for _, a := range approvals {
			if _, err := a.Wait(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := n.createFor(t, "zoe")

	req := &ordersv1.ListOrdersRequest{Statuses: []ordersv1.OrderStatus{created}, PageSize: 1}
	began := time.Now()
	first, err := n.client.ListOrders(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a page that examined %d candidates took %v", eventstore.ListScanBudget, time.Since(began))
	if len(first.GetOrders()) != 0 || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v and token %q, want no order and a token (the scan budget spent)", ids(first.GetOrders()), first.GetNextPageToken())
	}
	req.PageToken = first.GetNextPageToken()
	second, err := n.client.ListOrders(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(second.GetOrders()), []string{last.GetOrderId()}) || second.GetNextPageToken() != "" {
		t.Fatalf("second page: %v and token %q, want only %s and no token", ids(second.GetOrders()), second.GetNextPageToken(), last.GetOrderId())
	}
}

// A foreign message on an order's own subject, and the repair after it
// (a copy of the order's last event, on the same subject), are no
// listing positions: the order is reported unreadable once, then listed
// once, by one status or two, for its customer and across customers.
func TestListOrdersListsARepairedOrderOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	o := n.createFor(t, "gus")
	if _, _, err := n.transition(testCtx(t), approved, o.GetOrderId(), "", 0); err != nil {
		t.Fatal(err)
	}
	subject, err := eventstore.EventSubject(approved, eventstore.KeyOf(o))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := n.js.Publish(testCtx(t), subject, []byte(`{"not": "an order event"}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []*ordersv1.ListOrdersRequest{
		{CustomerId: "gus", Statuses: []ordersv1.OrderStatus{approved}, PageSize: 1},
		{Statuses: []ordersv1.OrderStatus{approved}, PageSize: 1},
		{CustomerId: "gus", Statuses: []ordersv1.OrderStatus{created, approved}, PageSize: 1},
		{Statuses: []ordersv1.OrderStatus{created, approved}, PageSize: 1},
	}
	for _, req := range cases {
		var reported []uint64
		listed := n.listAll(t, proto.Clone(req).(*ordersv1.ListOrdersRequest), nil)
		res, err := n.client.ListOrders(testCtx(t), proto.Clone(req).(*ordersv1.ListOrdersRequest))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.GetUnreadableOrders() {
			reported = append(reported, u.GetSequence())
		}
		if len(listed) != 0 || !slices.Equal(reported, []uint64{foreign.Sequence}) {
			t.Errorf("before the repair, %v: listed %v, reported %v; want none listed and %d reported", req, ids(listed), reported, foreign.Sequence)
		}
	}
	if _, err := n.queue.RepairOrder(testCtx(t), &ordersv1.RepairOrderRequest{OrderId: o.GetOrderId()}); err != nil {
		t.Fatal(err)
	}
	for _, req := range cases {
		if got := ids(n.listAll(t, proto.Clone(req).(*ordersv1.ListOrdersRequest), nil)); !slices.Equal(got, []string{o.GetOrderId()}) {
			t.Errorf("after the repair, %v: listed %v, want %s once", req, got, o.GetOrderId())
		}
	}
}
