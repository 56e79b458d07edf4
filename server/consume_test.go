package server_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func createdQueue(name string) *ordersv1.ConsumeOrdersRequest {
	return &ordersv1.ConsumeOrdersRequest{Consumer: name, Statuses: []ordersv1.OrderStatus{created}, MaxInFlight: 100}
}

// Two clients on one consumer share its events: each of 2,000 goes to
// exactly one of them, all are acked, none is left pending.
func TestTwoClientsShareAConsumer(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const total = 2000
	n.createMany(t, total)

	var (
		mu   sync.Mutex
		seen = map[uint64]int{} // sequence → client
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	var cancels []func()
	for client := range 2 {
		stream, cancel := n.consume(t, createdQueue("shared"))
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var unacked []string
			defer func() { // settle the tail once every event has arrived
				if len(unacked) > 0 {
					n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, unacked...)
				}
			}()
			for {
				res, err := stream.Recv()
				if err != nil {
					select {
					case <-done:
					default:
						t.Errorf("client %d: %v", client, err)
					}
					return
				}
				if res.GetHeartbeat() {
					continue
				}
				mu.Lock()
				if other, dup := seen[res.GetEvent().GetSequence()]; dup {
					t.Errorf("sequence %d went to client %d and client %d", res.GetEvent().GetSequence(), other, client)
				}
				seen[res.GetEvent().GetSequence()] = client
				count := len(seen)
				mu.Unlock()
				unacked = append(unacked, res.GetAckToken())
				if len(unacked) == 25 { // acks go in batches, as a real client sends them
					n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, unacked...)
					unacked = nil
				}
				if count == total {
					close(done)
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("received %d of %d events", len(seen), total)
	}
	for _, cancel := range cancels {
		cancel()
	}
	wg.Wait()
	perClient := map[int]int{}
	for _, c := range seen {
		perClient[c]++
	}
	if perClient[0] == 0 || perClient[1] == 0 {
		t.Errorf("the work was not shared: %v", perClient)
	}
	info := n.consumerInfo(t, "shared")
	if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream < uint64(total) {
		t.Fatalf("consumer left with %d unacked, %d pending, ack floor %d", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
	}
}

// A client that goes away holding unacked events loses nothing: a second
// client gets every event, those the first held after their ack wait.
func TestClientGoneMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const total = 100
	n.createMany(t, total)
	req := createdQueue("handover")
	req.MaxInFlight = 10
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(2 * time.Second)}

	first, cancelFirst := n.consume(t, req)
	held := map[uint64]bool{}
	for range 10 {
		held[nextEvent(t, first).GetEvent().GetSequence()] = true
	}
	cancelFirst() // gone, with 10 events unacked

	req.MaxInFlight = 100
	second, _ := n.consume(t, req)
	start := time.Now()
	got := map[uint64]bool{}
	for len(got) < total {
		res := nextEvent(t, second)
		seq := res.GetEvent().GetSequence()
		if got[seq] {
			t.Fatalf("sequence %d delivered twice to the second client", seq)
		}
		got[seq] = true
		if held[seq] {
			if res.GetDeliveryAttempt() != 2 {
				t.Errorf("held event %d came with attempt %d, want 2", seq, res.GetDeliveryAttempt())
			}
			if time.Since(start) < time.Second {
				t.Errorf("held event %d came back after %v, before its ack wait", seq, time.Since(start))
			}
		}
		n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, res.GetAckToken())
	}
	if info := n.consumerInfo(t, "handover"); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer left with %d unacked, %d pending", info.NumAckPending, info.NumPending)
	}
}

func TestNakWithDelayRedeliversLater(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	stream, _ := n.consume(t, createdQueue("nak"))
	first := nextEvent(t, stream)
	nakAt := time.Now()
	if _, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{
		AckToken: first.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_NAK, NakDelay: dur(time.Second),
	}}}); err != nil {
		t.Fatal(err)
	}
	again := nextEvent(t, stream)
	if took := time.Since(nakAt); took < 900*time.Millisecond {
		t.Errorf("redelivered after %v, before the 1s delay", took)
	}
	if again.GetEvent().GetSequence() != first.GetEvent().GetSequence() || again.GetDeliveryAttempt() != 2 {
		t.Errorf("redelivery %v, want sequence %d attempt 2", again, first.GetEvent().GetSequence())
	}
}

func TestInProgressExtendsTheAckWait(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	req := createdQueue("slow-work")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(2 * time.Second)}
	req.HeartbeatInterval = dur(time.Second)
	stream, _ := n.consume(t, req)
	res := nextEvent(t, stream)
	// Work for 2 ack waits, telling JetStream every quarter of one.
	redelivered := make(chan *ordersv1.ConsumeOrdersResponse, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			if !r.GetHeartbeat() {
				redelivered <- r
				return
			}
		}
	}()
	for range 8 {
		n.ack(t, ordersv1.AckAction_ACK_ACTION_IN_PROGRESS, res.GetAckToken())
		select {
		case r := <-redelivered:
			t.Fatalf("redelivered while in progress: %v", r)
		case <-time.After(500 * time.Millisecond):
		}
	}
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, res.GetAckToken())
	select {
	case r := <-redelivered:
		t.Fatalf("redelivered after the ack: %v", r)
	case <-time.After(2500 * time.Millisecond):
	}
}

func TestTermAndMaxDeliveriesStopRedelivery(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	terminated := n.create(t)
	expiring := n.create(t)
	req := createdQueue("poison")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Second), MaxDeliveries: 2}
	req.HeartbeatInterval = dur(time.Second)
	stream, _ := n.consume(t, req)
	deliveries := map[string]int{}
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetHeartbeat() {
			continue
		}
		id := res.GetEvent().GetOrder().GetOrderId()
		deliveries[id]++
		if id == terminated.GetOrderId() {
			if _, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{
				AckToken: res.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "cannot be processed",
			}}}); err != nil {
				t.Fatal(err)
			}
		}
		// expiring is never acked: delivered max_deliveries times, then given up.
	}
	if deliveries[terminated.GetOrderId()] != 1 {
		t.Errorf("terminated event delivered %d times, want 1", deliveries[terminated.GetOrderId()])
	}
	if deliveries[expiring.GetOrderId()] != 2 {
		t.Errorf("unacked event delivered %d times, want max_deliveries = 2", deliveries[expiring.GetOrderId()])
	}
}

func TestExistingConsumerWithOtherSettingsIsRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	req := createdQueue("settled")
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(5 * time.Second)}
	stream, cancel := n.consume(t, req)
	nextEvent(t, stream)
	cancel()

	for name, c := range map[string]struct {
		edit func(*ordersv1.ConsumeOrdersRequest)
		want string
	}{
		"another ack wait": {func(r *ordersv1.ConsumeOrdersRequest) { r.Settings.AckWait = dur(10 * time.Second) }, "ack_wait"},
		"other statuses":   {func(r *ordersv1.ConsumeOrdersRequest) { r.Statuses = []ordersv1.OrderStatus{approved} }, "statuses"},
		"another start": {func(r *ordersv1.ConsumeOrdersRequest) {
			r.Settings.Start = &ordersv1.ConsumerSettings_StartNew{StartNew: true}
		}, "start"},
		"a delivery limit": {func(r *ordersv1.ConsumeOrdersRequest) { r.Settings.MaxDeliveries = 3 }, "max_deliveries"},
	} {
		t.Run(name, func(t *testing.T) {
			r := createdQueue("settled")
			r.Settings = &ordersv1.ConsumerSettings{AckWait: dur(5 * time.Second)}
			c.edit(r)
			stream, err := n.client.ConsumeOrders(testCtx(t), r)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), c.want) {
				t.Fatalf("got %v, want FAILED_PRECONDITION naming %s", err, c.want)
			}
		})
	}
	// Unset settings match the existing consumer.
	same, _ := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: "settled", Statuses: []ordersv1.OrderStatus{created}, HeartbeatInterval: dur(time.Second)})
	if res, err := same.Recv(); err != nil || !res.GetHeartbeat() {
		t.Fatalf("binding with unset settings: %v, %v", res, err)
	}
}

// A delivery from one node is acked on another: JetStream confirms it, and
// the first node sees the ack and gives the client its credit back at
// once (with max_in_flight 1, the next event depends on it).
func TestAckOnAnotherNode(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	a.createMany(t, 3)
	req := createdQueue("cross-node")
	req.MaxInFlight = 1
	req.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Minute)}
	stream, _ := a.consume(t, req)
	var seqs []uint64
	for range 3 {
		res := nextEvent(t, stream)
		seqs = append(seqs, res.GetEvent().GetSequence())
		start := time.Now()
		b.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, res.GetAckToken())
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("ack took %v", took)
		}
	}
	if seqs[0] == seqs[1] || seqs[1] == seqs[2] {
		t.Fatalf("sequences %v: an acked event came back", seqs)
	}
	if info := a.consumerInfo(t, "cross-node"); info.NumAckPending != 0 {
		t.Fatalf("%d events unacked", info.NumAckPending)
	}
}

// A consumer with a backoff is created and bound again with the same
// settings (JetStream makes the first step its ack wait); ack_wait and
// backoff together are refused as contradictory.
func TestConsumerWithBackoff(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	req := createdQueue("backoff")
	req.HeartbeatInterval = dur(time.Second)
	req.Settings = &ordersv1.ConsumerSettings{Backoff: []*durationpb.Duration{dur(time.Second), dur(2 * time.Second)}, MaxDeliveries: 3}
	for range 2 {
		stream, cancel := n.consume(t, req)
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("consumer with a backoff: %v", err)
		}
		cancel()
	}
	req.Settings.AckWait = dur(time.Minute)
	stream, err := n.client.ConsumeOrders(testCtx(t), req)
	if err == nil {
		_, err = stream.Recv()
	}
	assertFieldViolation(t, err, "settings.ack_wait")
}
