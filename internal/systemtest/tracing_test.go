package systemtest

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// One trace follows an order: the CreateOrder call, the publish of its
// created event, the review worker that reads it (through the event's
// headers), and the publish of the approval.
func TestTraceFollowsAnOrderThroughReview(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(previous); _ = tp.Shutdown(context.Background()) })

	client, health, _ := startOrdersd(t, t.TempDir())
	waitServing(t, health)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{OrderId: "traced", CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	var spans []sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans = recorder.Ended()
		if find(spans, "publish ORDERS.approved.c.traced") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no approval was traced; spans: %v", names(spans))
		}
		time.Sleep(20 * time.Millisecond)
	}
	call := find(spans, "orders.v1.OrderService/CreateOrder")
	created := find(spans, "publish ORDERS.created.c.traced")
	review := find(spans, "order-review")
	approved := find(spans, "publish ORDERS.approved.c.traced")
	for name, s := range map[string]sdktrace.ReadOnlySpan{"CreateOrder": call, "publish created": created, "order-review": review, "publish approved": approved} {
		if s == nil {
			t.Fatalf("no %s span; spans: %v", name, names(spans))
		}
	}
	trace := call.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{created, review, approved} {
		if s.SpanContext().TraceID() != trace {
			t.Errorf("%s is in trace %s, not the CreateOrder trace %s", s.Name(), s.SpanContext().TraceID(), trace)
		}
	}
	if created.Parent().SpanID() != call.SpanContext().SpanID() ||
		review.Parent().SpanID() != created.SpanContext().SpanID() ||
		approved.Parent().SpanID() != review.SpanContext().SpanID() {
		t.Errorf("the chain CreateOrder → publish → order-review → publish is broken")
	}
}

func find(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
