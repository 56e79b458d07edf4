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
			req.RequestId = "bulk-149" // a retry of the previous order, still in flight
			w = expect{duplicate: true}
		case i == 201:
			req.OrderId, req.RequestId = "taken", ""
			w = expect{code: "ALREADY_EXISTS"}
		case i == 300:
			req.OrderId = "explicit-300"
		case i == 301:
			req.OrderId, req.RequestId = "explicit-300", "bulk-300" // its retry
			w = expect{duplicate: true}
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
			if res.GetDuplicate() != w.duplicate || res.GetOrder().GetRevision() == 0 {
				t.Errorf("order %d: %v, want duplicate %v", i, res, w.duplicate)
			}
			if !w.duplicate {
				created++
			}
		}
	}
	if !proto.Equal(results[150].GetOrder(), results[149].GetOrder()) || !proto.Equal(results[301].GetOrder(), results[300].GetOrder()) {
		t.Error("a retried order was not answered with the original")
	}
	// Stored in request order.
	var last uint64
	for i, res := range results {
		if res.GetError() == nil && !res.GetDuplicate() {
			if rev := res.GetOrder().GetRevision(); rev <= last {
				t.Errorf("order %d stored at revision %d, after an earlier request's %d", i, rev, last)
			}
			last = res.GetOrder().GetRevision()
		}
	}
	if got := n.streamMsgs(t, ""); got != uint64(created)+1 {
		t.Fatalf("stream holds %d events, want %d created + 1", got, created)
	}
}
