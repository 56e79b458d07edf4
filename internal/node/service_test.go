package node

import (
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// A client that watches health (as grpc-go's client-side health checking
// does) learns NOT_SERVING, can still call during the drain delay, and
// then has its watch ended: it does not hold the graceful stop until the
// shutdown timeout.
func TestShutdownDrainsThenEndsHealthWatches(t *testing.T) {
	const drainDelay = 500 * time.Millisecond
	nc := testsupport.Connect(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	svc, err := Assemble(testsupport.Context(t, 10*time.Second), nc, ServiceOptions{
		Tokens:     consumers.RandomAckTokens(),
		DrainDelay: drainDelay,
	}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.GRPC.Serve(lis) }()
	t.Cleanup(func() { _ = svc.Shutdown(time.Second) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	health := healthpb.NewHealthClient(conn)

	ctx := testsupport.Context(t, 30*time.Second)
	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch before shutdown: %v", err)
		}
		if res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}

	const shutdownTimeout = 10 * time.Second
	shutdown := make(chan error, 1)
	began := time.Now()
	go func() { shutdown <- svc.Shutdown(shutdownTimeout) }()

	res, err := watch.Recv()
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health watch after shutdown began: %v, %v; want NOT_SERVING", res.GetStatus(), err)
	}
	// Still serving while it drains: a call gets its answer.
	check, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || check.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check during the drain delay: %v, %v; want NOT_SERVING", check.GetStatus(), err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("health watch at the end of the drain: %v, want UNAVAILABLE", err)
	}
	ended := time.Since(began)
	if ended < drainDelay {
		t.Errorf("the watch ended %s after shutdown began, before the %s drain delay", ended, drainDelay)
	}
	select {
	case err := <-shutdown:
		if errors.Is(err, ErrShutdownCutOff) || err != nil {
			t.Errorf("Shutdown: %v (the health watch held the graceful stop)", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("Shutdown did not return")
	}
}
