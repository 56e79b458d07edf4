package systemtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// childOrdersd runs ordersd as a child process (this test binary, see
// TestMain) on a free loopback port.
type childOrdersd struct {
	cmd    *exec.Cmd
	addr   string
	conn   *grpc.ClientConn
	client ordersv1.OrderServiceClient
	exited chan error
}

// startChild runs ordersd as a child process and waits until it serves.
func startChild(t *testing.T, dataDir string, flags ...string) *childOrdersd {
	t.Helper()
	c := spawnChild(t, dataDir, flags...)
	waitServing(t, healthpb.NewHealthClient(c.conn))
	return c
}

// spawnChild runs ordersd as a child process and connects a client to it,
// without waiting for it to serve (nodes of a cluster start together).
func spawnChild(t *testing.T, dataDir string, flags ...string) *childOrdersd {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cmd := exec.Command(os.Args[0], append([]string{"--grpc-addr", addr, "--data-dir", dataDir, "--metrics-addr", "", "--http-addr", "",
		"--review=false", "--shutdown-timeout", "5s", "--log-level", "warn"}, flags...)...)
	cmd.Env = append(os.Environ(), "ORDERSD_TEST_RUN_MAIN=1")
	// Its log goes to a file, shown when the test fails (or as it comes
	// with ORDERSD_TEST_LOG set): a cluster's survivors log every failed
	// attempt to reach a killed peer.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "ordersd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, logFile
	if os.Getenv(testsupport.LogEnv) != "" {
		cmd.Stderr = os.Stderr
	}
	t.Cleanup(func() {
		defer logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil && len(b) > 0 {
				t.Logf("log of ordersd on %s (last 4 KiB):\n%s", addr, b[max(0, len(b)-4096):])
			}
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childOrdersd{cmd: cmd, addr: addr, exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	if c.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.conn.Close() })
	c.client = ordersv1.NewOrderServiceClient(c.conn)
	return c
}

// signal sends sig to the child and waits up to 20s for it to exit; it
// returns how it exited (a SIGKILL's exit status is no error here).
func (c *childOrdersd) signal(sig syscall.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup, and a second signal
		if sig == syscall.SIGKILL {
			return nil
		}
		return err
	case <-time.After(20 * time.Second):
		return fmt.Errorf("ordersd did not exit within 20s of %v", sig)
	}
}

// SIGTERM during an active ConsumeOrders stream and a burst of creates:
// the process exits within its bound, every create that returned OK is
// stored, and the next consumer gets every event that was not acked.
func TestSIGTERMDrainsWithoutLosingAnything(t *testing.T) {
	dataDir := t.TempDir()
	child := startChild(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := func(client ordersv1.OrderServiceClient) (*ordersv1.Order, error) {
		res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}})
		return res.GetOrder(), err
	}
	for range 50 {
		if _, err := create(child.client); err != nil {
			t.Fatal(err)
		}
	}
	queue := &ordersv1.ConsumeOrdersRequest{Consumer: "drain", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight: 10, Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(2 * time.Second)}}
	stream, err := child.client.ConsumeOrders(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 { // held, never acked
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu  sync.Mutex
		oks []*ordersv1.Order
		wg  sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				order, err := create(child.client)
				if err != nil {
					return
				}
				mu.Lock()
				oks = append(oks, order)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-child.exited:
		if err != nil {
			t.Fatalf("ordersd exited with %v", err)
		}
		child.exited <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("ordersd did not exit within 15s of SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if _, err := stream.Recv(); err == nil {
		t.Error("the ConsumeOrders stream went on after shutdown")
	}
	wg.Wait()
	if len(oks) == 0 {
		t.Fatal("no create succeeded during the burst")
	}

	next := startChild(t, dataDir)
	for _, want := range oks {
		if _, err := next.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: want.GetOrderId()}); err != nil {
			t.Fatalf("acknowledged order %s is gone: %v", want.GetOrderId(), err)
		}
	}
	total := 50 + len(oks)
	queue.MaxInFlight = 1000
	again, err := next.client.ConsumeOrders(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for len(seen) < total {
		res, err := again.Recv()
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(seen), total, err)
		}
		if res.GetHeartbeat() {
			continue
		}
		seen[res.GetEvent().GetSequence()] = true
		if _, err := next.client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: res.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK}}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d creates acknowledged during the burst; all %d events consumed after the restart", len(oks), total)
}
