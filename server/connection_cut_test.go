package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// recvWithin is one Recv of a stream that must answer (an event, a
// heartbeat or its end) within d: a stream silent for longer stalls. A Recv
// left waiting ends when the stream's context does.
func recvWithin[T any](t *testing.T, what string, d time.Duration, recv func() (*T, error)) (*T, error) {
	t.Helper()
	type result struct {
		res *T
		err error
	}
	got := make(chan result, 1)
	go func() {
		res, err := recv()
		got <- result{res, err}
	}()
	select {
	case r := <-got:
		return r.res, r.err
	case <-time.After(d):
		t.Fatalf("%s: nothing for %v, not even a heartbeat: the stream stalls", what, d)
		return nil, nil
	}
}

// TestNATSConnectionCutByProxy cuts the network between ordersd and NATS
// with a TCP proxy, both servers running on: health goes NOT_SERVING and
// back, calls fail fast with UNAVAILABLE while cut, and open watch and
// consume streams either go on without a gap or end with UNAVAILABLE and
// resume from where they were.
func TestNATSConnectionCutByProxy(t *testing.T) {
	t.Parallel()
	n, proxy, nc := startNodeBehindProxy(t)
	url := "nats://" + proxy.Addr()
	order := n.create(t)
	token := heldDelivery(t, n)

	// Streams open across the cut, each bounded as a whole; every Recv is
	// bounded too, at a few heartbeats.
	const heartbeat, silence = time.Second, 5 * time.Second
	// Longer than JetStream keeps an ephemeral consumer nobody listens to
	// (5s by default) and than nats.go waits before it recreates a missing
	// ordered consumer (two idle heartbeats, 10s by default): a shorter cut
	// would not show a monitor that depends on those defaults stalling.
	const cutFor = 10500 * time.Millisecond
	streamCtx, cancelStreams := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancelStreams)
	watchReq := &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}, HeartbeatInterval: dur(heartbeat)}
	watching, err := n.client.WatchOrders(streamCtx, watchReq)
	if err != nil {
		t.Fatal(err)
	}
	nextWatched := func() (*ordersv1.OrderEvent, error) {
		t.Helper()
		for {
			res, err := recvWithin(t, "watch", silence, watching.Recv)
			if err != nil || res.GetEvent() != nil {
				return res.GetEvent(), err
			}
		}
	}
	if ev, err := nextWatched(); err != nil || ev.GetSequence() != order.GetRevision() {
		t.Fatalf("watch replay: %v, %v; want the event at sequence %d", ev, err, order.GetRevision())
	}
	consumeReq := &ordersv1.ConsumeOrdersRequest{Consumer: "cut-by-proxy", AutoAck: true, HeartbeatInterval: dur(heartbeat)}
	consuming, err := n.client.ConsumeOrders(streamCtx, consumeReq)
	if err != nil {
		t.Fatal(err)
	}
	nextConsumed := func(stream grpc.ServerStreamingClient[ordersv1.ConsumeOrdersResponse]) (*ordersv1.OrderEvent, error) {
		t.Helper()
		for {
			res, err := recvWithin(t, "consume", silence, stream.Recv)
			if err != nil || !res.GetHeartbeat() {
				return res.GetEvent(), err
			}
		}
	}
	if ev, err := nextConsumed(consuming); err != nil || ev.GetOrder().GetOrderId() != order.GetOrderId() {
		t.Fatalf("consume: %v, %v; want order %s", ev, err, order.GetOrderId())
	}

	cutAt := time.Now()
	proxy.Cut()
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)
	// The disconnect itself triggers a check that fails at once, but a
	// check already waiting on JetStream when the link went may take its
	// whole --nats-timeout first: the bound is the stall tests' one.
	if took := time.Since(cutAt); took > stallBound {
		t.Errorf("health took %v to go NOT_SERVING after the cut, want at most %v", took, stallBound)
	}

	checkCallsFailFast(t, n, order, token, "while cut")
	// While cut, the streams still speak: heartbeats (nothing can be
	// stored), or their end with UNAVAILABLE.
	var watchEnded, consumeEnded error
	for until := time.Now().Add(cutFor); time.Now().Before(until) && (watchEnded == nil || consumeEnded == nil); {
		if watchEnded == nil {
			if res, err := recvWithin(t, "watch while cut", silence, watching.Recv); err != nil {
				watchEnded = err
			} else if res.GetEvent() != nil {
				t.Fatalf("watch while cut: %v, want heartbeats", res)
			}
		}
		if consumeEnded == nil {
			if res, err := recvWithin(t, "consume while cut", silence, consuming.Recv); err != nil {
				consumeEnded = err
			} else if !res.GetHeartbeat() {
				t.Fatalf("consume while cut: %v, want heartbeats", res)
			}
		}
	}
	t.Logf("while cut: watch ended with %v, consume ended with %v", watchEnded, consumeEnded)
	if nc.IsConnected() {
		t.Fatalf("ordersd is connected to %s while the proxy is cut: it went around the proxy", nc.ConnectedUrl())
	}

	proxy.Restore()
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	if got, pool := nc.ConnectedUrl(), nc.Servers(); got != url || len(pool) != 1 {
		t.Fatalf("ordersd reconnected to %s from %v, want only the proxy %s", got, pool, url)
	}
	if nc.Stats().Reconnects == 0 {
		t.Fatal("ordersd never reconnected: the cut did not reach it")
	}
	approvedOrder, _, err := n.transition(testCtx(t), approved, order.GetOrderId(), "approve-after-cut", 0)
	approvedAt := time.Now()
	if err != nil {
		t.Fatalf("approve after the cut: %v", err)
	}
	second := n.create(t)

	// The watch goes on with the approval, the next event in the stream,
	// or ended with UNAVAILABLE and resumes from the sequence after the
	// last one it saw.
	ev, err := nextWatched()
	if err != nil {
		if c := status.Code(err); c != codes.Unavailable {
			t.Fatalf("watch across the cut ended with %v, want UNAVAILABLE", err)
		}
		t.Logf("watch across the cut ended with %v; resuming", err)
		watchReq.Start = &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: order.GetRevision() + 1}
		if watching, err = n.client.WatchOrders(streamCtx, watchReq); err != nil {
			t.Fatal(err)
		}
		ev, err = nextWatched()
	}
	if err != nil || ev.GetSequence() != approvedOrder.GetRevision() {
		t.Fatalf("watch after the cut: %v, %v; want the approval at sequence %d", ev, err, approvedOrder.GetRevision())
	}
	// Heartbeats alone are no proof of life: the events must flow again.
	if late := time.Since(approvedAt); late > 5*time.Second {
		t.Errorf("the approval reached the watch %v after it was stored: heartbeats but no events in between", late)
	}
	if ev, err := nextWatched(); err != nil || ev.GetSequence() != second.GetRevision() {
		t.Fatalf("watch after the cut: %v, %v; want the second order at sequence %d", ev, err, second.GetRevision())
	}

	// The consume stream goes on with the approval (every event type is
	// consumed) or ended with UNAVAILABLE; the durable consumer resumes
	// where it was either way.
	want := []uint64{approvedOrder.GetRevision(), second.GetRevision()}
	for len(want) > 0 {
		ev, err := nextConsumed(consuming)
		if err != nil {
			if c := status.Code(err); c != codes.Unavailable {
				t.Fatalf("consume across the cut ended with %v, want UNAVAILABLE", err)
			}
			t.Logf("consume across the cut ended with %v; resuming", err)
			if consuming, err = n.client.ConsumeOrders(streamCtx, consumeReq); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if ev.GetSequence() != want[0] {
			t.Fatalf("consume after the cut: got sequence %d, want %d", ev.GetSequence(), want[0])
		}
		want = want[1:]
	}
}
