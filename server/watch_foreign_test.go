package server_test

import (
	"testing"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// seedOrder is an order as the seed article's publisher writes it: JSON,
// published with nats.go straight onto ORDERS.
const seedOrder = `{"id":"s1","customer":"customer-1","items":[{"sku":"apple","qty":2}],"total":3.5}`

// replayed reads a replaying watch until caught_up and returns its events
// and skipped messages.
func replayed(t *testing.T, n *testNode, req *ordersv1.WatchOrdersRequest) []*ordersv1.WatchOrdersResponse {
	t.Helper()
	stream, cancel := n.watch(t, req)
	defer cancel()
	var got []*ordersv1.WatchOrdersResponse
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch %v after %v: %v", req, got, err)
		}
		if res.GetCaughtUp() {
			return got
		}
		if res.GetEvent() != nil || res.GetSkipped() != nil {
			got = append(got, res)
		}
	}
}

// A watch tells its watcher about a message that is not an order event:
// its sequence and why, in its place in the stream, both in a replay and
// live, so that a watcher can tell it from a gap. Watchers whose filters
// it does not match (another customer, another status) are not told.
func TestWatchReportsForeignMessages(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	a := n.create(t)
	subject := "ORDERS.approved.customer-1." + a.GetOrderId()
	ack, err := n.js.Publish(testCtx(t), subject, []byte(seedOrder))
	if err != nil {
		t.Fatal(err)
	}
	b := n.create(t)
	all := &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}

	got := replayed(t, n, &ordersv1.WatchOrdersRequest{Start: all})
	if len(got) != 3 || got[0].GetEvent().GetSequence() != a.GetRevision() || got[2].GetEvent().GetSequence() != b.GetRevision() {
		t.Fatalf("replay: %v; want the first order, the foreign message, the second order", got)
	}
	skipped := got[1].GetSkipped()
	if skipped.GetSequence() != ack.Sequence || skipped.GetSubject() != subject || skipped.GetOrderId() != a.GetOrderId() ||
		skipped.GetCustomerId() != "customer-1" || skipped.GetStream() != "ORDERS" || skipped.GetReason() == "" {
		t.Fatalf("replay reports %v", skipped)
	}
	for name, tc := range map[string]struct {
		req  *ordersv1.WatchOrdersRequest
		want int // updates before caught_up
	}{
		"the order's approvals": {&ordersv1.WatchOrdersRequest{Start: all, OrderId: a.GetOrderId(), Statuses: []ordersv1.OrderStatus{approved}}, 1},
		"its customer":          {&ordersv1.WatchOrdersRequest{Start: all, CustomerId: "customer-1"}, 3},
		"created only":          {&ordersv1.WatchOrdersRequest{Start: all, Statuses: []ordersv1.OrderStatus{created}}, 2},
		"another customer":      {&ordersv1.WatchOrdersRequest{Start: all, CustomerId: "customer-2"}, 0},
		"another order":         {&ordersv1.WatchOrdersRequest{Start: all, OrderId: b.GetOrderId()}, 1},
	} {
		got := replayed(t, n, tc.req)
		skips := 0
		for _, res := range got {
			if res.GetSkipped() != nil {
				skips++
			}
		}
		wantSkips := 0
		if name == "the order's approvals" || name == "its customer" {
			wantSkips = 1
		}
		if len(got) != tc.want || skips != wantSkips {
			t.Errorf("%s: %v; want %d updates, %d of them skipped", name, got, tc.want, wantSkips)
		}
	}

	// Live: a watcher of new events is told too, between the events.
	stream, cancel := n.watch(t, &ordersv1.WatchOrdersRequest{})
	defer cancel()
	if res, err := stream.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("live watch: %v, %v; want caught_up first", res, err)
	}
	live, err := n.js.Publish(testCtx(t), "ORDERS.created.customer-1."+b.GetOrderId(), []byte(seedOrder))
	if err != nil {
		t.Fatal(err)
	}
	c := n.create(t)
	var updates []*ordersv1.WatchOrdersResponse
	for len(updates) < 2 {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !res.GetHeartbeat() {
			updates = append(updates, res)
		}
	}
	if updates[0].GetSkipped().GetSequence() != live.Sequence || updates[0].GetSkipped().GetOrderId() != b.GetOrderId() ||
		updates[1].GetEvent().GetSequence() != c.GetRevision() {
		t.Fatalf("live: %v; want the foreign message at %d, then the event at %d", updates, live.Sequence, c.GetRevision())
	}
}
