package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// createMany creates count orders from 16 concurrent clients and returns
// them (in no particular order).
func (n *testNode) createMany(t *testing.T, count int) []*ordersv1.Order {
	t.Helper()
	var (
		mu     sync.Mutex
		orders []*ordersv1.Order
		wg     sync.WaitGroup
		next   = make(chan struct{}, count)
	)
	for range count {
		next <- struct{}{}
	}
	close(next)
	ctx := testCtx(t)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				res, err := n.client.CreateOrder(ctx, validCreate(""))
				if err != nil {
					t.Errorf("CreateOrder: %v", err)
					return
				}
				mu.Lock()
				orders = append(orders, res.GetOrder())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(orders) != count {
		t.Fatalf("created %d orders, want %d", len(orders), count)
	}
	return orders
}

// consume opens a ConsumeOrders stream that ends with the test (or cancel).
func (n *testNode) consume(t *testing.T, req *ordersv1.ConsumeOrdersRequest) (grpc.ServerStreamingClient[ordersv1.ConsumeOrdersResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(streamCtx(t))
	t.Cleanup(cancel)
	stream, err := n.client.ConsumeOrders(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return stream, cancel
}

// nextEvent reads the stream until an event (skipping heartbeats).
func nextEvent(t *testing.T, stream grpc.ServerStreamingClient[ordersv1.ConsumeOrdersResponse]) *ordersv1.ConsumeOrdersResponse {
	t.Helper()
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("ConsumeOrders: %v", err)
		}
		if !res.GetHeartbeat() {
			return res
		}
	}
}

// ack settles tokens with one action and fails the test unless there is
// one result per ack and every ack is confirmed. For the test's own
// goroutine; other goroutines use tryAck.
func (n *testNode) ack(t *testing.T, action ordersv1.AckAction, tokens ...string) {
	t.Helper()
	if err := n.tryAck(testCtx(t), action, tokens...); err != nil {
		t.Fatal(err)
	}
}

// tryAck settles tokens with one action and reports an error unless there
// is one result per ack and every ack is confirmed.
func (n *testNode) tryAck(ctx context.Context, action ordersv1.AckAction, tokens ...string) error {
	req := &ordersv1.AckOrdersRequest{}
	for _, tok := range tokens {
		req.Acks = append(req.Acks, &ordersv1.Ack{AckToken: tok, Action: action})
	}
	res, err := n.client.AckOrders(ctx, req)
	if err != nil {
		return fmt.Errorf("AckOrders: %w", err)
	}
	if len(res.GetResults()) != len(tokens) {
		return fmt.Errorf("AckOrders: %d results for %d acks", len(res.GetResults()), len(tokens))
	}
	for i, r := range res.GetResults() {
		if !r.GetConfirmed() {
			return fmt.Errorf("ack %d not confirmed: %s", i, r.GetError())
		}
	}
	return nil
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// watch opens a WatchOrders stream that ends with the test (or cancel).
func (n *testNode) watch(t *testing.T, req *ordersv1.WatchOrdersRequest) (grpc.ServerStreamingClient[ordersv1.WatchOrdersResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(streamCtx(t))
	t.Cleanup(cancel)
	stream, err := n.client.WatchOrders(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return stream, cancel
}
