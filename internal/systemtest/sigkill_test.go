package systemtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// ordersd is killed (SIGKILL, no shutdown at all) while 16 clients create
// orders, each retrying a failed call with the same request id until it
// succeeds, against ordersd restarted on the same data: every call that
// returned OK is stored exactly once, and every request, retried or not,
// made exactly one order.
func TestSIGKILLWhileClientsRetry(t *testing.T) {
	dataDir := t.TempDir()
	var current atomic.Pointer[childOrdersd]
	current.Store(startChild(t, dataDir))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var (
		mu      sync.Mutex
		acked   = map[string]string{} // request id → order id
		retried atomic.Int64
		wg      sync.WaitGroup
		stop    atomic.Bool
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				requestID := fmt.Sprintf("w%d-%d", w, i)
				for attempt := 0; ; attempt++ {
					callCtx, cancelCall := context.WithTimeout(ctx, 3*time.Second)
					res, err := current.Load().client.CreateOrder(callCtx, &ordersv1.CreateOrderRequest{
						RequestId: requestID, CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}},
					})
					cancelCall()
					if err == nil {
						mu.Lock()
						acked[requestID] = res.GetOrder().GetOrderId()
						mu.Unlock()
						break
					}
					if ctx.Err() != nil {
						t.Errorf("request %s never succeeded: %v", requestID, err)
						return
					}
					retried.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	killed := current.Load()
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-killed.exited
	killed.exited <- nil // for the cleanup
	natsAddr := freePorts(t, 1)[0]
	current.Store(startChild(t, dataDir, "--nats-listen", natsAddr, "--nats-listen-token", "inspect"))
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	if retried.Load() == 0 {
		t.Fatal("no call failed: the kill came at no time")
	}

	// Every acknowledged order is there, and the stream holds exactly one
	// event per request id.
	for requestID, orderID := range acked {
		if _, err := current.Load().client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: orderID}); err != nil {
			t.Fatalf("acknowledged order %s (request %s): %v", orderID, requestID, err)
		}
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.Token("inspect"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := eventsByRequest(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for requestID := range acked {
		if counts[requestID] != 1 {
			t.Errorf("request %s stored %d events", requestID, counts[requestID])
		}
	}
	for requestID, n := range counts {
		if n != 1 {
			t.Errorf("request %s stored %d events", requestID, n)
		}
	}
	t.Logf("%d requests acknowledged, %d failed attempts retried across the kill", len(acked), retried.Load())
}
