package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Health is NOT_SERVING while the stream ORDERS is missing and cannot be
// provisioned again (another stream holds its subjects), calls fail with
// UNAVAILABLE meanwhile, and health is SERVING again once ordersd has
// provisioned the stream by itself. Deleted with nothing in the way, the
// stream is simply provisioned again.
func TestHealthFollowsTheStream(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	order := n.create(t)
	ctx := testCtx(t)

	// Deleted, with nothing in the way: ordersd provisions it again.
	if err := n.js.DeleteStream(ctx, eventstore.StreamName); err != nil {
		t.Fatal(err)
	}
	waitStream(t, n)
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	n.create(t)

	// Deleted, and a squatter takes its subjects before ordersd's next
	// check (every 200 ms) can provision it: the stream stays missing.
	squatter := jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{eventstore.StreamSubjects}, Storage: jetstream.MemoryStorage}
	for attempt := 0; ; attempt++ {
		err := n.js.DeleteStream(ctx, eventstore.StreamName)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatal(err)
		}
		if _, err = n.js.CreateStream(ctx, squatter); err == nil {
			break
		}
		if attempt == 20 { // ordersd won every race: not plausible at one check per 200 ms
			t.Fatalf("cannot take the stream's subjects: %v", err)
		}
	}
	waitHealth(t, n, healthpb.HealthCheckResponse_NOT_SERVING)
	if _, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetOrder with the stream missing: %v, want UNAVAILABLE", err)
	}
	if _, err := n.client.CreateOrder(ctx, validCreate("")); status.Code(err) != codes.Unavailable {
		t.Errorf("CreateOrder with the stream missing: %v, want UNAVAILABLE", err)
	}

	if err := n.js.DeleteStream(ctx, squatter.Name); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	waitStream(t, n)
	if _, err := n.client.CreateOrder(ctx, validCreate("")); err != nil {
		t.Fatalf("CreateOrder once the stream is back: %v", err)
	}
}

// waitStream waits until the stream ORDERS exists, as ordersd provisions it.
func waitStream(t *testing.T, n *testNode) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.js.Stream(testCtx(t), eventstore.StreamName)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not provisioned again: %v", eventstore.StreamName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A stream with no room for the write (a limit with DiscardNew, set by an
// operator) answers CreateOrder and transitions with RESOURCE_EXHAUSTED,
// for messages and for bytes.
func TestFullStreamIsResourceExhausted(t *testing.T) {
	t.Parallel()
	for name, limit := range map[string]func(*jetstream.StreamConfig, jetstream.StreamState){
		"message limit": func(c *jetstream.StreamConfig, s jetstream.StreamState) { c.MaxMsgs = int64(s.Msgs) },
		"byte limit":    func(c *jetstream.StreamConfig, s jetstream.StreamState) { c.MaxBytes = int64(s.Bytes) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t)
			order := n.create(t)
			ctx := testCtx(t)
			stream, err := n.js.Stream(ctx, eventstore.StreamName)
			if err != nil {
				t.Fatal(err)
			}
			info, err := stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cfg := info.Config
			cfg.Discard = jetstream.DiscardNew
			limit(&cfg, info.State)
			if _, err := n.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			if _, err := n.client.CreateOrder(ctx, validCreate("")); status.Code(err) != codes.ResourceExhausted {
				t.Errorf("CreateOrder into a full stream: %v, want RESOURCE_EXHAUSTED", err)
			}
			if _, _, err := n.transition(ctx, approved, order.GetOrderId(), "", 0); status.Code(err) != codes.ResourceExhausted {
				t.Errorf("ApproveOrder into a full stream: %v, want RESOURCE_EXHAUSTED", err)
			}
			if got := n.streamMsgs(t, ""); got != 1 {
				t.Errorf("the full stream holds %d events, want 1", got)
			}
		})
	}
}
