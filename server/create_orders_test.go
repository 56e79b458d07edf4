package server_test

import (
	"fmt"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// CreateOrders answers every order in request order, with the same results
// CreateOrder would give: created, duplicate for a repeated request id,
// INVALID_ARGUMENT with field violations, ALREADY_EXISTS for a taken id.
func TestCreateOrdersStreamsResultsInOrder(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	taken := validCreate("")
	taken.OrderId = "taken"
	if _, err := n.client.CreateOrder(testCtx(t), taken); err != nil {
		t.Fatal(err)
	}

	type expect struct {
		code      string // "" for success
		duplicate bool
		field     string
	}
	var (
		reqs []*ordersv1.CreateOrderRequest
		want []expect
	)
	for i := range 500 {
		req := validCreate(fmt.Sprintf("bulk-%d", i))
		w := expect{}
		switch {
		case i == 7:
			req.CurrencyCode = "euro"
			w = expect{code: "INVALID_ARGUMENT", field: "currency_code"}
		case i == 99:
			req.Items[0].Quantity = -1
			w = expect{code: "INVALID_ARGUMENT", field: "items[0].quantity"}
		case i == 150:
			// A retry of the previous order, still in flight. The creates
			// of a stream run concurrently, so either of the two may be
			// the one stored: one of them is the duplicate (checked below).
			req.RequestId = "bulk-149"
		case i == 201:
			req.OrderId, req.RequestId = "taken", ""
			w = expect{code: "ALREADY_EXISTS"}
		case i == 300:
			req.OrderId = "explicit-300"
		case i == 301:
			req.OrderId, req.RequestId = "explicit-300", "bulk-300" // its retry, as for 150
		}
		reqs, want = append(reqs, req), append(want, w)
	}

	stream, err := n.client.CreateOrders(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, req := range reqs {
			if err := stream.Send(&ordersv1.CreateOrdersRequest{Order: req}); err != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	var results []*ordersv1.CreateOrdersResponse
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	if len(results) != len(reqs) {
		t.Fatalf("%d results for %d orders", len(results), len(reqs))
	}
	created := 0
	for i, res := range results {
		w := want[i]
		if got := res.GetError().GetCode(); got != w.code {
			t.Errorf("order %d: error %v, want code %q", i, res.GetError(), w.code)
			continue
		}
		if w.field != "" && (len(res.GetError().GetFieldViolations()) == 0 || res.GetError().GetFieldViolations()[0].GetField() != w.field) {
			t.Errorf("order %d: violations %v, want %s", i, res.GetError().GetFieldViolations(), w.field)
		}
		if w.code == "" {
			retried := i == 149 || i == 150 || i == 300 || i == 301
			if (!retried && res.GetDuplicate() != w.duplicate) || res.GetOrder().GetRevision() == 0 {
				t.Errorf("order %d: %v, want duplicate %v", i, res, w.duplicate)
			}
			if !res.GetDuplicate() {
				created++
			}
		}
	}
	for _, pair := range [][2]int{{149, 150}, {300, 301}} {
		first, second := results[pair[0]], results[pair[1]]
		if !proto.Equal(first.GetOrder(), second.GetOrder()) {
			t.Errorf("orders %d and %d (a retry) were answered with different orders: %v, %v", pair[0], pair[1], first, second)
		}
		if first.GetDuplicate() == second.GetDuplicate() {
			t.Errorf("orders %d and %d (a retry): duplicate %v and %v, want exactly one", pair[0], pair[1], first.GetDuplicate(), second.GetDuplicate())
		}
	}
	if got := n.streamMsgs(t, ""); got != uint64(created)+1 {
		t.Fatalf("stream holds %d events, want %d created + 1", got, created)
	}
}
