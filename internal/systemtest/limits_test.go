package systemtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// A request over --max-recv-msg-size is refused by gRPC with
// RESOURCE_EXHAUSTED before ordersd reads it; the node keeps serving.
func TestOversizedRequestIsRefused(t *testing.T) {
	client, health, _ := startOrdersd(t, t.TempDir(), "--review=false", "--max-recv-msg-size", "65536")
	waitServing(t, health)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		CustomerId: "c", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: strings.Repeat("x", 100_000), Quantity: 1}},
	})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}},
	}); err != nil {
		t.Fatalf("a normal request after it: %v", err)
	}
}
