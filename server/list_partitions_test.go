package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// startPartitionedNode runs one ordersd node whose orders are laid out
// over n partitions, on an embedded NATS server of its own.
func startPartitionedNode(t *testing.T, n int) *testNode {
	t.Helper()
	return startNodeOn(t, testsupport.StartNATS(t, testsupport.InProcessOnly), func(o *node.ServiceOptions) {
		o.Layout = eventstore.Layout{Partitions: n}
	})
}

// ListOrders over three partitions keeps the promises it keeps over one
// stream: paging while orders are created and move between pages lists
// no order twice, for one customer and across customers.
func TestListOrdersAcrossPartitionsPagingWhileOrdersMove(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		customer string
		statuses []ordersv1.OrderStatus
	}{
		{"one customer, APPROVED or PAID", "frank", []ordersv1.OrderStatus{approved, paid}},
		{"across customers, CREATED, APPROVED or PAID", "", []ordersv1.OrderStatus{created, approved, paid}},
		{"across customers, APPROVED, SHIPPED or CANCELLED", "", []ordersv1.OrderStatus{approved, shipped, cancelled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkPagingWhileOrdersMove(t, startPartitionedNode(t, 3), tc.customer, tc.statuses)
		})
	}
}

// A page token names the streams it was issued in: one of a deployment in
// layout 2 (or of other partitions) is refused by a partitioned one with
// the same key, and the partitioned node's own tokens go on.
func TestListOrdersRefusesPageTokensOfOtherLayouts(t *testing.T) {
	t.Parallel()
	one, three := startNode(t), startPartitionedNode(t, 3)
	for range 3 {
		one.createFor(t, "dave")
		three.createFor(t, "dave")
	}
	first, err := one.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "dave", PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page on layout 2: %v, %v", first, err)
	}
	_, err = three.client.ListOrders(testCtx(t), &ordersv1.ListOrdersRequest{CustomerId: "dave", PageSize: 1, PageToken: first.GetNextPageToken()})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a layout-2 page token on a partitioned node: %v, want INVALID_ARGUMENT", err)
	}
	got := three.listAll(t, &ordersv1.ListOrdersRequest{CustomerId: "dave", PageSize: 1}, nil)
	if len(got) != 3 {
		t.Fatalf("paging on the partitioned node listed %d orders, want 3", len(got))
	}
}
