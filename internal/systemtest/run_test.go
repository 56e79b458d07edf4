package systemtest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/cli"
	"github.com/ordersd/ordersd/internal/node"
)

// runOrdersd runs ordersd as the binary does (flags, then node.Run) on a
// loopback port, and returns its address and a function that stops it and
// returns node.Run's error.
func runOrdersd(t *testing.T, dataDir string, flags ...string) (node.Ready, func() error) {
	t.Helper()
	args := append([]string{"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", dataDir, "--shutdown-timeout", "5s"}, flags...)
	cfg, err := cli.ParseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	readies := make(chan node.Ready, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.OnReady = func(r node.Ready) { readies <- r }
	go func() { done <- node.Run(ctx, cfg.Config, log) }()
	var ready node.Ready
	select {
	case ready = <-readies:
	case err := <-done:
		cancel()
		t.Fatalf("ordersd did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("ordersd did not start within 30s")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("ordersd did not stop within 20s")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return ready, stop
}

// startOrdersd runs ordersd and connects a plaintext client to it.
func startOrdersd(t *testing.T, dataDir string, flags ...string) (ordersv1.OrderServiceClient, healthpb.HealthClient, func() error) {
	t.Helper()
	ready, stop := runOrdersd(t, dataDir, flags...)
	conn, err := grpc.NewClient(ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ordersv1.NewOrderServiceClient(conn), healthpb.NewHealthClient(conn), stop
}

// Orders survive a restart of ordersd and its embedded NATS server on the
// same data directory, with their revisions.
func TestOrdersSurviveRestart(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	client, _, stop := startOrdersd(t, dataDir, "--review=false")
	var orders []*ordersv1.Order
	for i := range 5 {
		res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
			CustomerId: "c", CurrencyCode: "USD",
			Items: []*ordersv1.LineItem{{Sku: "S", Quantity: int64(i + 1), UnitPriceMinor: 100}},
		})
		if err != nil {
			t.Fatal(err)
		}
		order := res.GetOrder()
		if i%2 == 0 {
			ap, err := client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: order.GetOrderId(), RequestId: "approve-" + order.GetOrderId()})
			if err != nil {
				t.Fatal(err)
			}
			order = ap.GetOrder()
		}
		orders = append(orders, order)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v after shutdown", err)
	}

	client, health, _ := startOrdersd(t, dataDir, "--review=false")
	waitServing(t, health)
	for _, want := range orders {
		got, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: want.GetOrderId()})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got.GetOrder(), want) {
			t.Errorf("after restart %v, want %v", got.GetOrder(), want)
		}
	}
	// Idempotency survives too: the approve retried after the restart is recognised.
	again, err := client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: orders[0].GetOrderId(), RequestId: "approve-" + orders[0].GetOrderId()})
	if err != nil || !again.GetDuplicate() || !proto.Equal(again.GetOrder(), orders[0]) {
		t.Fatalf("retry after restart: %v, %v", again, err)
	}
}

// Shutdown in the middle of a stream of creates from 16 clients: run
// returns nil within its bound, no call hangs, and every create that
// returned OK is stored.
func TestGracefulShutdownKeepsEveryAcknowledgedWrite(t *testing.T) {
	dataDir := t.TempDir()
	client, health, stop := startOrdersd(t, dataDir, "--review=false")
	waitServing(t, health)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		order *ordersv1.Order
		err   error
	}
	const workers = 16
	results := make(chan result, 100_000)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() { // create until ordersd refuses
			defer wg.Done()
			for {
				res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
					CustomerId: "c", CurrencyCode: "USD",
					Items: []*ordersv1.LineItem{{Sku: "S", Quantity: 1, UnitPriceMinor: 1}},
				})
				results <- result{res.GetOrder(), err}
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	wg.Wait()
	close(results)
	var acknowledged []*ordersv1.Order
	calls := 0
	for r := range results {
		calls++
		if r.err == nil {
			acknowledged = append(acknowledged, r.order)
		}
	}
	if len(acknowledged) == 0 {
		t.Fatal("no create succeeded before the stop")
	}
	client, health, _ = startOrdersd(t, dataDir, "--review=false")
	waitServing(t, health)
	for _, want := range acknowledged {
		got, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: want.GetOrderId()})
		if err != nil || !proto.Equal(got.GetOrder(), want) {
			t.Errorf("acknowledged order %s: %v, %v", want.GetOrderId(), got, err)
		}
	}
	t.Logf("%d of %d creates were acknowledged before the stop; all are stored", len(acknowledged), calls)
}

func waitServing(t *testing.T, health healthpb.HealthClient) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING: %v %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
