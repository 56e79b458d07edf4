package systemtest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// checkListReadsYourWrites creates orders of one customer on each node in
// turn and, right after each write returns, lists the customer's orders on
// the next node: the page holds every order written so far, in order
// (ListOrders reads from the stream leaders, wherever it is called).
func checkListReadsYourWrites(ctx context.Context, t *testing.T, nodes []*clusterNode) {
	t.Helper()
	customer := "ryw-" + nodes[0].name
	var written []string
	for i := range 12 {
		writer, reader := nodes[i%len(nodes)], nodes[(i+1)%len(nodes)]
		req := newClusterOrder(fmt.Sprintf("ryw-%d", i))
		req.CustomerId = customer
		res, err := writer.client.CreateOrder(ctx, req)
		if err != nil {
			t.Fatalf("create on %s: %v", writer.name, err)
		}
		written = append(written, res.GetOrder().GetOrderId())
		page, err := reader.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: customer})
		if err != nil {
			t.Fatalf("ListOrders on %s: %v", reader.name, err)
		}
		var listed []string
		for _, o := range page.GetOrders() {
			listed = append(listed, o.GetOrderId())
		}
		if !slices.Equal(listed, written) {
			t.Fatalf("ListOrders on %s right after a create on %s: %v, want %v", reader.name, writer.name, listed, written)
		}
	}
}

// checkPageTokensWorkOnEveryNode pages through one customer's orders,
// asking each page of the next node with the token the one before gave:
// a page token works on every node of a deployment (their key is derived
// from the shared ack-token key), and the pages hold every order once, in
// order, page_size at a time. A token of another query is refused there
// too.
func checkPageTokensWorkOnEveryNode(ctx context.Context, t *testing.T, nodes []*clusterNode) {
	t.Helper()
	customer := "pages-" + nodes[0].name
	var written []string
	for i := range 7 {
		req := newClusterOrder(fmt.Sprintf("pages-%d", i))
		req.CustomerId = customer
		res, err := nodes[i%len(nodes)].client.CreateOrder(ctx, req)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		written = append(written, res.GetOrder().GetOrderId())
	}
	req := &ordersv1.ListOrdersRequest{CustomerId: customer, PageSize: 2}
	var listed []string
	for page := 0; ; page++ {
		n := nodes[page%len(nodes)]
		res, err := n.client.ListOrders(ctx, req)
		if err != nil {
			t.Fatalf("page %d on %s with the token of %s: %v", page, n.name, nodes[(page+len(nodes)-1)%len(nodes)].name, err)
		}
		if got := len(res.GetOrders()); got > 2 || (got != 2 && res.GetNextPageToken() != "") {
			t.Fatalf("page %d on %s holds %d orders (next page token %q), want 2", page, n.name, got, res.GetNextPageToken())
		}
		for _, o := range res.GetOrders() {
			listed = append(listed, o.GetOrderId())
		}
		if res.GetNextPageToken() == "" {
			break
		}
		req.PageToken = res.GetNextPageToken()
		if page == 0 {
			other := &ordersv1.ListOrdersRequest{CustomerId: "someone-else", PageToken: req.PageToken}
			if _, err := nodes[1].client.ListOrders(ctx, other); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("a token of another query on %s: %v, want INVALID_ARGUMENT", nodes[1].name, err)
			}
		}
	}
	if !slices.Equal(listed, written) {
		t.Fatalf("paged across nodes: %v, want %v", listed, written)
	}
}
