package server_test

import (
	"context"
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

// AckOrders answers every ack in order, and says when one cannot be
// confirmed: with NATS stalled, each of two acks is confirmed false, with
// an error, within --nats-timeout (not the client's deadline); acked again
// once NATS is back, both are confirmed (acking again is safe).
func TestAckOrdersReportsUnconfirmedAcks(t *testing.T) {
	t.Parallel()
	n, proxy, _ := startNodeBehindProxy(t)
	n.createMany(t, 2)
	req := createdQueue("unconfirmed")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Hour)}
	stream, _ := n.consume(t, req)
	ack := &ordersv1.AckOrdersRequest{}
	for range 2 {
		ack.Acks = append(ack.Acks, &ordersv1.Ack{AckToken: nextEvent(t, stream).GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK})
	}

	proxy.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), patientClient)
	defer cancel()
	start := time.Now()
	res, err := n.client.AckOrders(ctx, ack)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("AckOrders while stalled: %v", err)
	}
	if len(res.GetResults()) != len(ack.GetAcks()) {
		t.Fatalf("%d results for %d acks", len(res.GetResults()), len(ack.GetAcks()))
	}
	for i, r := range res.GetResults() {
		if r.GetConfirmed() || r.GetError() == "" {
			t.Errorf("ack %d while stalled: confirmed %v, error %q; want unconfirmed, with an error", i, r.GetConfirmed(), r.GetError())
		}
	}
	if took > stallBound { // the bound is the point: the client waits 30 s
		t.Errorf("AckOrders while stalled took %v, want at most %v", took, stallBound)
	}

	proxy.Resume()
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	res, err = n.client.AckOrders(testCtx(t), ack)
	if err != nil || len(res.GetResults()) != len(ack.GetAcks()) {
		t.Fatalf("AckOrders again after the stall: %v, %v", res, err)
	}
	for i, r := range res.GetResults() {
		if !r.GetConfirmed() {
			t.Errorf("ack %d again after the stall: not confirmed: %s", i, r.GetError())
		}
	}
	if info := n.consumerInfo(t, "unconfirmed"); info.NumAckPending != 0 {
		t.Errorf("%d events still unacked", info.NumAckPending)
	}
}

// An ack that nothing can apply (its consumer was deleted) is not
// confirmed, while an ack beside it in the same call is.
func TestAckOnADeletedConsumerIsNotConfirmed(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	kept, _ := n.consume(t, createdQueue("kept"))
	gone, _ := n.consume(t, createdQueue("gone"))
	keptToken := nextEvent(t, kept).GetAckToken()
	goneToken := nextEvent(t, gone).GetAckToken()
	ctx := testCtx(t)
	stream, err := n.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	res, err := n.client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{
		{AckToken: goneToken, Action: ordersv1.AckAction_ACK_ACTION_ACK},
		{AckToken: keptToken, Action: ordersv1.AckAction_ACK_ACTION_ACK},
	}})
	if err != nil {
		t.Fatalf("AckOrders: %v", err)
	}
	results := res.GetResults()
	if len(results) != 2 {
		t.Fatalf("%d results for 2 acks", len(results))
	}
	if r := results[0]; r.GetConfirmed() || r.GetError() == "" {
		t.Errorf("ack on a deleted consumer: confirmed %v, error %q; want unconfirmed, with an error", r.GetConfirmed(), r.GetError())
	}
	if r := results[1]; !r.GetConfirmed() || r.GetError() != "" {
		t.Errorf("ack on a live consumer: confirmed %v, error %q; want confirmed", r.GetConfirmed(), r.GetError())
	}
}

// watchUntil reads a watch, recording every message, until done says so.
// Each Recv is bounded (recvWithin) by a few heartbeats.
func watchUntil(t *testing.T, stream interface {
	Recv() (*ordersv1.WatchOrdersResponse, error)
}, msgs *[]*ordersv1.WatchOrdersResponse, done func(*ordersv1.WatchOrdersResponse) bool) {
	t.Helper()
	for {
		res, err := recvWithin(t, "watch", 10*time.Second, stream.Recv)
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		*msgs = append(*msgs, res)
		if done(res) {
			return
		}
	}
}

// caughtUpAt returns the index of every caught_up message.
func caughtUpAt(msgs []*ordersv1.WatchOrdersResponse) []int {
	var at []int
	for i, m := range msgs {
		if m.GetCaughtUp() {
			at = append(at, i)
		}
	}
	return at
}

// WatchOrders sends caught_up exactly once: after the replay (if any) and
// before the first live event; never again while live events and
// heartbeats follow.
func TestCaughtUpIsSentOnce(t *testing.T) {
	t.Parallel()
	for name, replay := range map[string]bool{"replay then live": true, "live only": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t)
			stored := n.createMany(t, 3)
			req := &ordersv1.WatchOrdersRequest{HeartbeatInterval: dur(time.Second)}
			if replay {
				req.Start = &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}
			}
			stream, _ := n.watch(t, req)
			var msgs []*ordersv1.WatchOrdersResponse
			watchUntil(t, stream, &msgs, (*ordersv1.WatchOrdersResponse).GetCaughtUp)
			replayed := 0
			for _, m := range msgs {
				if m.GetEvent() != nil {
					replayed++
				}
			}
			if want := map[bool]int{true: len(stored), false: 0}[replay]; replayed != want {
				t.Fatalf("%d events before caught_up, want %d", replayed, want)
			}

			// Live events, then heartbeats: a second caught_up would come
			// with either. Two heartbeats after the last event leave room
			// for one sent late.
			n.createMany(t, 2)
			live, beats := 0, 0
			watchUntil(t, stream, &msgs, func(m *ordersv1.WatchOrdersResponse) bool {
				if m.GetEvent() != nil {
					live++
					beats = 0
				}
				if m.GetHeartbeat() && live == 2 {
					beats++
				}
				return beats == 2
			})
			if at := caughtUpAt(msgs); len(at) != 1 || at[0] != replayed {
				t.Fatalf("caught_up at messages %v of %d, want once, at %d (after the %d replayed events)", at, len(msgs), replayed, replayed)
			}
			if live != 2 {
				t.Fatalf("%d live events, want 2", live)
			}
		})
	}
}
