package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// startRun runs a node in process, as cmd/ordersd does, and waits until it
// serves. It returns Run's error when Run ends before that, and otherwise a
// function that stops the node and returns Run's error.
func startRun(t *testing.T, cfg Config, log *slog.Logger) (Ready, func() error, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readies := make(chan Ready, 1)
	done := make(chan error, 1)
	cfg.OnReady = func(r Ready) { readies <- r }
	go func() { done <- Run(ctx, cfg, log) }()
	select {
	case r := <-readies:
		stop := sync.OnceValue(func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(20 * time.Second):
				t.Fatal("the node did not stop within 20s")
				return nil
			}
		})
		t.Cleanup(func() { _ = stop() })
		return r, stop, nil
	case err := <-done:
		cancel()
		return Ready{}, nil, err
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("the node did not start within 30s")
		return Ready{}, nil, nil
	}
}

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A second node on a data directory that a running node holds fails at
// once, naming the directory and the process, before it starts an
// embedded NATS server on the store.
func TestSecondNodeOnTheSameDataDirFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := startRun(t, validConfig(dir), testsupport.Logger()); err != nil {
		t.Fatalf("first node: %v", err)
	}
	var logs syncBuffer
	_, stop, err := startRun(t, validConfig(dir), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err == nil {
		_ = stop()
		t.Fatal("a second node ran on the data directory of the first")
	}
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second node: %v; want ErrDataDirLocked naming %s and process %d", err, dir, os.Getpid())
	}
	if strings.Contains(logs.String(), "nats-server") || strings.Contains(logs.String(), "embedded NATS") {
		t.Fatalf("the second node started NATS on the store before it failed:\n%s", logs.String())
	}
}

// holdLockEnv makes the test binary a process that locks a data
// directory and waits to be killed.
const holdLockEnv = "ORDERSD_TEST_HOLD_LOCK"

// The lock names the process that holds it, and dies with it: a node
// killed with SIGKILL leaves no stale lock.
func TestDataDirLockDiesWithItsProcess(t *testing.T) {
	if dir := os.Getenv(holdLockEnv); dir != "" {
		if _, err := lockDataDir(dir); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDataDirLockDiesWithItsProcess$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the holder process said %q, %v", line, err)
	}

	_, err = lockDataDir(dir)
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", cmd.Process.Pid)) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("lock held by process %d: %v; want ErrDataDirLocked naming it and %s", cmd.Process.Pid, err, dir)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	lock, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after its holder was killed: %v", err)
	}
	lock.release()
}

// A taken gRPC, metrics or HTTP address fails the node before it touches the
// data directory: no JetStream file is created.
func TestBusyPortFailsBeforeTheStoreOpens(t *testing.T) {
	for _, tc := range []struct {
		name string
		flag string
		set  func(*Config, string)
	}{
		{"a busy gRPC port", "--grpc-addr", func(c *Config, addr string) { c.GRPCAddr = addr }},
		{"a busy metrics port", "--metrics-addr", func(c *Config, addr string) { c.MetricsAddr = addr }},
		{"a busy HTTP port", "--http-addr", func(c *Config, addr string) { c.HTTPAddr = addr }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			dir := filepath.Join(t.TempDir(), "data")
			cfg := validConfig(dir)
			cfg.MetricsAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			tc.set(&cfg, busy.Addr().String())
			_, stop, err := startRun(t, cfg, testsupport.Logger())
			if err == nil {
				_ = stop()
				t.Fatal("the node ran on a busy port")
			}
			if !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("error %q does not name %s and %s", err, tc.flag, busy.Addr())
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != lockFileName {
					t.Errorf("the data directory holds %s: the store was opened before the port was tried", e.Name())
				}
			}
		})
	}
}

// closeHook is a listener that calls onClose when it is first closed.
type closeHook struct {
	net.Listener
	once    sync.Once
	onClose func()
}

func (l *closeHook) Close() error {
	l.once.Do(l.onClose)
	return l.Listener.Close()
}

// Run shuts down in order: health is NOT_SERVING before the gRPC listener
// closes, the embedded NATS server stops (clients of it are cut off), the
// data directory is released, and Run returns nil.
func TestRunShutsDownInOrder(t *testing.T) {
	var (
		readyzURL       string
		readyzAtClose   = make(chan int, 1)
		listens         int
		grpcListenerSet bool
	)
	listenTCP = func(network, addr string) (net.Listener, error) {
		lis, err := net.Listen(network, addr)
		if listens++; err != nil || listens > 1 {
			return lis, err
		}
		grpcListenerSet = true
		return &closeHook{Listener: lis, onClose: func() { readyzAtClose <- readyz(readyzURL) }}, nil // the first is gRPC's
	}
	t.Cleanup(func() { listenTCP = net.Listen })

	dir := t.TempDir()
	cfg := validConfig(dir)
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Review = true
	ready, stop, err := startRun(t, cfg, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if !grpcListenerSet {
		t.Fatal("the gRPC listener was not bound through listenTCP")
	}
	readyzURL = "http://" + ready.MetricsAddr.String() + "/readyz"
	deadline := time.Now().Add(10 * time.Second)
	for readyz(readyzURL) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the node was not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := make(chan struct{})
	nc, err := ready.ConnectNATS(nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after shutdown", err)
	}
	select {
	case code := <-readyzAtClose:
		if code != http.StatusServiceUnavailable {
			t.Errorf("/readyz answered %d as the gRPC listener closed; want 503 (NOT_SERVING first)", code)
		}
	default:
		t.Error("the gRPC listener was not closed")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("a client of the embedded NATS server is still connected: the server did not stop")
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("the data directory is still locked after Run returned: %v", err)
	}
	lock.release()
}

// readyz is the status code of a GET of url, or 0 when it fails.
func readyz(url string) int {
	client := http.Client{Timeout: 2 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// Closing the node's NATS drains its connection (messages already
// delivered to its subscriptions are handled) and then stops the embedded
// server.
func TestNATSCloseDrainsThenStopsTheEmbeddedServer(t *testing.T) {
	log := testsupport.Logger()
	conn, err := connectNATS(validConfig(t.TempDir()), log)
	if err != nil {
		t.Fatal(err)
	}
	const count = 20
	var (
		mu      sync.Mutex // protects handled
		handled int
	)
	if _, err := conn.nc.Subscribe("drain.test", func(*nats.Msg) {
		time.Sleep(5 * time.Millisecond) // still handling when the close begins
		mu.Lock()
		handled++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for range count {
		if err := conn.nc.Publish("drain.test", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	conn.close(5*time.Second, log)
	mu.Lock()
	defer mu.Unlock()
	if handled != count {
		t.Errorf("%d of %d delivered messages handled: the connection was not drained", handled, count)
	}
	if !conn.nc.IsClosed() {
		t.Error("the connection is not closed")
	}
	if conn.embedded.Running() {
		t.Error("the embedded server still runs")
	}
}
