package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// attempts records the request_id of every attempt of CreateOrder that
// gRPC sends, retries included (a stats handler sees each attempt).
type attempts struct {
	mu  sync.Mutex // protects ids
	ids map[string]int
}

func (a *attempts) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *attempts) HandleConn(context.Context, stats.ConnStats) {}
func (a *attempts) HandleRPC(_ context.Context, s stats.RPCStats) {
	out, ok := s.(*stats.OutPayload)
	if !ok || !out.Client {
		return
	}
	var id string
	switch req := out.Payload.(type) {
	case *ordersv1.CreateOrderRequest:
		id = req.GetRequestId()
	case *ordersv1.CreateOrdersRequest:
		id = req.GetOrder().GetRequestId()
	default:
		return
	}
	a.mu.Lock()
	a.ids[id]++
	a.mu.Unlock()
}

// retried returns how many request ids were sent more than once.
func (a *attempts) retried() (retried, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, n := range a.ids {
		if id == "" {
			return -1, len(a.ids) // an attempt without an id: the interceptor failed
		}
		if n > 1 {
			retried++
		}
	}
	return retried, len(a.ids)
}

// Orders sent on a CreateOrders stream without request ids get one each,
// a different one for the same message sent twice, and the caller's
// message is left as it was.
func TestCreateOrdersStreamGetsRequestIDs(t *testing.T) {
	sent := &attempts{ids: map[string]int{}}
	c, err := client.Dial(ordersdAddr, client.WithInsecure(), client.WithDialOptions(grpc.WithStatsHandler(sent)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stream, err := c.CreateOrders(testsupport.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := &ordersv1.CreateOrdersRequest{Order: newOrder()}
	for range 2 {
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		res, err := stream.Recv()
		if err != nil || res.GetError() != nil || res.GetDuplicate() {
			t.Fatalf("result %v, %v; want a new order", res, err)
		}
		ids = append(ids, res.GetOrder().GetOrderId())
	}
	if ids[0] == ids[1] {
		t.Fatalf("two creates gave one order %s", ids[0])
	}
	if msg.GetOrder().GetRequestId() != "" {
		t.Fatalf("the caller's message was changed: %v", msg)
	}
	retried, total := sent.retried()
	if retried < 0 {
		t.Fatal("an order went out on the stream without a request_id")
	}
	if total != 2 {
		t.Fatalf("%d distinct request ids went out for two orders, want 2", total)
	}
}
