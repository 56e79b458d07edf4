package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	ordersserver "github.com/ordersd/ordersd/server"
)

// slowGet holds every Get until release is closed, and says when one has
// begun.
type slowGet struct {
	ordersserver.OrderStore
	began   chan struct{}
	release chan struct{}
}

func (s *slowGet) Get(ctx context.Context, orderID string) (*ordersv1.Order, error) {
	s.began <- struct{}{}
	<-s.release
	return &ordersv1.Order{OrderId: orderID}, nil
}

// A unary call over HTTP that is running when shutdown begins finishes
// with its answer: the HTTP port is drained before the gRPC server's
// GracefulStop, which would cut it off at once.
func TestShutdownLetsHTTPCallsInFlightFinish(t *testing.T) {
	nc := testsupport.Connect(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	store := &slowGet{began: make(chan struct{}, 1), release: make(chan struct{})}
	svc, err := Assemble(testsupport.Context(t, 10*time.Second), nc, ServiceOptions{
		Tokens: consumers.RandomAckTokens(),
		Tune: func(d *ordersserver.Deps) {
			store.OrderStore = d.Store
			d.Store = store
		},
	}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HTTPAddr: lis.Addr().String(), Limits: DefaultLimits}
	h, err := newHTTPServer(lis, svc.GRPC.(*grpc.Server), cfg, nil, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	svc.http = h
	go func() { _ = h.serve(testsupport.Logger()) }()

	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		res, err := http.Post("http://"+lis.Addr().String()+"/orders.v1.OrderService/GetOrder", "application/json", strings.NewReader(`{"order_id": "slow-1"}`))
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		answers <- answer{res.StatusCode, string(body), err}
	}()
	select {
	case <-store.began:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach the store")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Shutdown(10 * time.Second) }()
	// Shutdown is under way, waiting for the call, once the port refuses
	// new connections.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			break
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the HTTP port still takes connections 10 s after shutdown began")
		}
	}
	close(store.release)
	a := <-answers
	if a.err != nil || a.status != http.StatusOK || !strings.Contains(a.body, `"orderId":"slow-1"`) {
		t.Errorf("the call in flight at shutdown: %d %q %v; want its answer", a.status, a.body, a.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
