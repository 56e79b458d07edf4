package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func noEnv(string) string { return "" }

// servingLine is the log line of a node that serves gRPC, with its address.
var servingLine = regexp.MustCompile(`msg="ordersd serving gRPC" addr=(\S+)`)

// logWatch is the stderr of a Main under test: it keeps the log and says
// where the node serves once it logs so.
type logWatch struct {
	mu      sync.Mutex // protects buf and addr
	buf     bytes.Buffer
	addr    string
	serving chan struct{} // closed once addr is set
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.addr == "" {
		if m := servingLine.FindSubmatch(w.buf.Bytes()); m != nil {
			w.addr = string(m[1])
			close(w.serving)
		}
	}
	return len(p), nil
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startOrdersd runs Main, as cmd/ordersd does, on dataDir and a loopback
// port, and connects a client once it serves. stop cancels Main's context
// and returns its exit status.
func startOrdersd(t *testing.T, dataDir string, flags ...string) (client ordersv1.OrderServiceClient, log *logWatch, stop func() int) {
	t.Helper()
	args := append([]string{"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--http-addr", "", "--data-dir", dataDir, "--shutdown-delay", "0s"}, flags...)
	ctx, cancel := context.WithCancel(context.Background())
	log = &logWatch{serving: make(chan struct{})}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, noEnv, io.Discard, log) }()
	select {
	case <-log.serving:
	case code := <-done:
		cancel()
		t.Fatalf("ordersd exited with %d before it served:\n%s", code, log)
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("ordersd did not serve within 30s:\n%s", log)
	}
	stopped, code := false, 0
	stop = func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("ordersd did not stop within 20s:\n%s", log)
		}
		return code
	}
	t.Cleanup(func() { _ = stop() })
	conn, err := grpc.NewClient(log.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ordersv1.NewOrderServiceClient(conn), log, stop
}

// waitFor polls cond until it holds or d has passed, and says whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// freePort is a loopback address nothing listens on (as of the call).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Main's exit status tells a supervisor what happened: 0 a clean stop (or
// version, --help), 2 a mistake in flags or settings, named on stderr, 1 a
// node that could not run.
func TestMainExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		code      int
		out, diag string
	}{
		{[]string{"version"}, 0, "ordersd ", ""},
		{[]string{"--help"}, 0, "", "Usage: ordersd [flags]"},
		{[]string{"migrate", "--help"}, 0, "", "Usage: ordersd [flags]"},
		{[]string{"--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"--replicas", "0"}, 2, "", "ordersd: invalid configuration: --replicas must be 1 to 5"},
		{[]string{"--log-format", "xml"}, 2, "", "ordersd: --log-format must be text or json"},
		{[]string{"migrate", "--log-level", "loud"}, 2, "", "ordersd migrate: --log-level"},
		{[]string{"--grpc-addr", "256.0.0.1:1", "--metrics-addr", "", "--http-addr", "", "--data-dir", t.TempDir()}, 1, "", "ordersd stopped"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, noEnv, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.diag) {
			t.Errorf("ordersd %v: exit %d, stdout %q, stderr %q; want exit %d, %q on stdout, %q on stderr",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.diag)
		}
	}
}

// A node run by Main serves until its context ends, then stops in order
// and exits 0.
func TestMainServesUntilItsContextEnds(t *testing.T) {
	client, log, stop := startOrdersd(t, t.TempDir(), "--review=false")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: res.GetOrder().GetOrderId()}); err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d after its context ended, want 0:\n%s", code, log)
	}
}
