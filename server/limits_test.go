package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/server"
)

// Past the node's limit of watchers or consumers, a new stream is refused
// at once with RESOURCE_EXHAUSTED; when one ends, its place is free again.
func TestStreamLimitsAnswerResourceExhausted(t *testing.T) {
	t.Parallel()
	n := startNodes(t, 1, func(d *server.Deps) { d.MaxWatchers, d.MaxConsumers = 2, 1 })[0]
	n.create(t)

	var cancels []func()
	for range 2 {
		stream, cancel := n.watch(t, &ordersv1.WatchOrdersRequest{})
		if res, err := stream.Recv(); err != nil || !res.GetCaughtUp() {
			t.Fatalf("watcher within the limit: %v, %v", res, err)
		}
		cancels = append(cancels, cancel)
	}
	start := time.Now()
	extra, _ := n.watch(t, &ordersv1.WatchOrdersRequest{})
	if _, err := extra.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third watcher: %v, want RESOURCE_EXHAUSTED", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refusal took %v", took)
	}
	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		again, cancel := n.watch(t, &ordersv1.WatchOrdersRequest{})
		res, err := again.Recv()
		cancel()
		if err == nil && res.GetCaughtUp() {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after one watcher left: %v, %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	consuming, _ := n.consume(t, createdQueue("limited"))
	nextEvent(t, consuming)
	other, _ := n.consume(t, createdQueue("limited"))
	if _, err := other.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second consumer: %v, want RESOURCE_EXHAUSTED", err)
	}
}
