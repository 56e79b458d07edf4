package systemtest

import (
	"context"
	"fmt"
	"slices"
	"testing"

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
