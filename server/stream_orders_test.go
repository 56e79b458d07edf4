package server_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

type orderStream = grpc.BidiStreamingClient[ordersv1.StreamOrdersRequest, ordersv1.StreamOrdersResponse]

// streamOrders opens a StreamOrders stream with open as its first message;
// it ends with the test (or cancel).
func (n *testNode) streamOrders(t *testing.T, open *ordersv1.ConsumeOrdersRequest) (orderStream, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(streamCtx(t))
	t.Cleanup(cancel)
	stream, err := n.client.StreamOrders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&ordersv1.StreamOrdersRequest{Open: open}); err != nil {
		t.Fatal(err)
	}
	return stream, cancel
}

// nextResponse reads the stream until deliveries or ack results come
// (skipping heartbeats).
func nextResponse(t *testing.T, stream orderStream) *ordersv1.StreamOrdersResponse {
	t.Helper()
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("StreamOrders: %v", err)
		}
		if !res.GetHeartbeat() {
			return res
		}
	}
}

// settle sends one ack message: action on each delivery id.
func settle(t *testing.T, stream orderStream, action ordersv1.AckAction, ids ...uint64) {
	t.Helper()
	req := &ordersv1.StreamOrdersRequest{}
	for _, id := range ids {
		req.Acks = append(req.Acks, &ordersv1.StreamAck{Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: id}, Action: action})
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
}

// The stream never holds more unsettled deliveries than max_in_flight; a
// backlog comes several events per response; acks on the stream, by
// delivery id or token, return credit and are confirmed in ack_results;
// one by token on another node (AckOrders) returns it too. Every event
// arrives once, with its order as stored, and all end acked.
func TestStreamOrdersFlowControlAndAcks(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	const total, credit = 120, 10
	orders := a.createMany(t, total)
	byID := map[string]*ordersv1.Order{}
	for _, o := range orders {
		byID[o.GetOrderId()] = o
	}
	open := createdQueue("pull-flow")
	open.MaxInFlight = credit
	open.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Minute)}
	stream, _ := a.streamOrders(t, open)
	responses := make(chan *ordersv1.StreamOrdersResponse, 100)
	go func() { // the test's goroutine reads from responses
		defer close(responses)
		for {
			res, err := stream.Recv()
			if err != nil {
				return
			}
			if !res.GetHeartbeat() {
				responses <- res
			}
		}
	}()
	next := func(wait time.Duration) *ordersv1.StreamOrdersResponse {
		t.Helper()
		select {
		case res, ok := <-responses:
			if !ok {
				t.Fatal("the stream ended")
			}
			return res
		case <-time.After(wait):
			return nil
		}
	}

	var (
		unsettled = map[uint64]*ordersv1.StreamDelivery{} // by delivery id
		seen      = map[uint64]bool{}                     // event sequences
		largest   int
		confirmed int
		sentAcks  int
	)
	for round := 0; len(seen) < total; round++ {
		res := next(10 * time.Second)
		if res == nil {
			t.Fatalf("nothing within 10s with %d unsettled (ack wait is a minute: credit was not returned)", len(unsettled))
		}
		for _, r := range res.GetAckResults() {
			if !r.GetConfirmed() {
				t.Fatalf("ack %v not confirmed: %s", r.GetDelivery(), r.GetError())
			}
			confirmed++
		}
		largest = max(largest, len(res.GetDeliveries()))
		for _, d := range res.GetDeliveries() {
			seq := d.GetEvent().GetSequence()
			if seen[seq] {
				t.Fatalf("sequence %d delivered twice", seq)
			}
			seen[seq] = true
			want := byID[d.GetEvent().GetOrder().GetOrderId()]
			if want == nil || d.GetEvent().GetOrder().GetRevision() != seq || d.GetEvent().GetOrder().GetTotalMinor() != want.GetTotalMinor() ||
				d.GetEvent().GetPublishTime().AsTime().IsZero() || d.GetDeliveryAttempt() != 1 || d.GetAckToken() == "" {
				t.Fatalf("delivery %v does not carry its stored order %v", d, want)
			}
			unsettled[d.GetDeliveryId()] = d
		}
		if len(unsettled) > credit {
			t.Fatalf("%d deliveries unsettled, max_in_flight is %d", len(unsettled), credit)
		}
		if len(unsettled) < credit && len(seen) < total {
			continue // more may come within the credit
		}
		if round < 5 { // full: nothing more may come until an ack
			if more := next(300 * time.Millisecond); more != nil && len(more.GetDeliveries()) > 0 {
				t.Fatalf("%d more delivered with %d unsettled, max_in_flight is %d", len(more.GetDeliveries()), len(unsettled), credit)
			}
		}
		// Settle what is held, three ways in turn.
		var ids []uint64
		for id, d := range unsettled {
			switch round % 3 {
			case 0: // by delivery id on the stream
				ids = append(ids, id)
			case 1: // by token on the stream
				if err := stream.Send(&ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{{
					Delivery: &ordersv1.StreamAck_AckToken{AckToken: d.GetAckToken()}, Action: ordersv1.AckAction_ACK_ACTION_ACK}}}); err != nil {
					t.Fatal(err)
				}
				sentAcks++
			case 2: // by token on the other node
				b.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
			}
			delete(unsettled, id)
		}
		if len(ids) > 0 {
			settle(t, stream, ordersv1.AckAction_ACK_ACTION_ACK, ids...)
			sentAcks += len(ids)
		}
	}
	if largest < 2 {
		t.Errorf("the backlog came one event per response")
	}
	for confirmed < sentAcks {
		res := next(10 * time.Second)
		if res == nil {
			t.Fatalf("%d of %d acks confirmed", confirmed, sentAcks)
		}
		if len(res.GetDeliveries()) > 0 {
			t.Fatalf("delivered again: %v", res.GetDeliveries())
		}
		for _, r := range res.GetAckResults() {
			if !r.GetConfirmed() {
				t.Fatalf("ack %v not confirmed: %s", r.GetDelivery(), r.GetError())
			}
			confirmed++
		}
	}
	if info := a.consumerInfo(t, "pull-flow"); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer left with %d unacked, %d pending", info.NumAckPending, info.NumPending)
	}
}

// A client that leaves after its first response loses nothing: the
// events it was sent come back after their ack wait, with attempt 2, and
// every other one goes to the next client; each arrives once.
func TestStreamOrdersClientGoneMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const total = 300
	n.createMany(t, total)
	open := createdQueue("pull-gone")
	open.MaxInFlight = 300
	open.Settings = &ordersv1.ConsumerSettings{AckWait: dur(2 * time.Second)}
	first, cancelFirst := n.streamOrders(t, open)
	got := map[uint64]int{} // sequence → its deliveries
	for _, d := range nextResponse(t, first).GetDeliveries() {
		got[d.GetEvent().GetSequence()]++
	}
	cancelFirst()

	second, _ := n.streamOrders(t, open)
	for acked := 0; acked < total; {
		var ids []uint64
		for _, d := range nextResponse(t, second).GetDeliveries() {
			seq := d.GetEvent().GetSequence()
			if got[seq] > 0 && d.GetDeliveryAttempt() < 2 {
				t.Fatalf("sequence %d, sent to the first client, came again with attempt %d", seq, d.GetDeliveryAttempt())
			}
			got[seq]++
			ids = append(ids, d.GetDeliveryId())
		}
		if len(ids) > 0 {
			settle(t, second, ordersv1.AckAction_ACK_ACTION_ACK, ids...)
			acked += len(ids)
		}
	}
	if len(got) != total {
		t.Fatalf("%d distinct events of %d", len(got), total)
	}
	waitForInfo(t, n, "pull-gone", func(pending, unacked uint64) bool { return pending == 0 && unacked == 0 })
}

// waitForInfo polls a consumer until ok holds for its pending and
// unacknowledged counts.
func waitForInfo(t *testing.T, n *testNode, consumer string, ok func(pending, unacked uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := n.consumerInfo(t, consumer)
		if ok(info.NumPending, uint64(info.NumAckPending)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s: %d pending, %d unacked", consumer, info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bad input on the stream ends it with a clear status, and none of the
// acks of the bad message is applied, even the good ones beside the bad.
func TestStreamOrdersBadInputEndsTheStreamAndAcksNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.createMany(t, 2)
	foreign, _ := consumers.NewAckTokens([]byte("another-deployment-key-0123456789abc"))
	byID := func(id uint64) *ordersv1.StreamAck {
		return &ordersv1.StreamAck{Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: id}, Action: ordersv1.AckAction_ACK_ACTION_ACK}
	}
	for name, c := range map[string]struct {
		bad  func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest
		code codes.Code
	}{
		"unknown delivery id": {func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest {
			return &ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{byID(d.GetDeliveryId()), byID(d.GetDeliveryId() + 1000)}}
		}, codes.InvalidArgument},
		"token of another deployment": {func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest {
			return &ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{byID(d.GetDeliveryId()),
				{Delivery: &ordersv1.StreamAck_AckToken{AckToken: foreign.Sign(testEpoch, "$JS.ACK.ORDERS.bad.1.1.1.1.0")}, Action: ordersv1.AckAction_ACK_ACTION_ACK}}}
		}, codes.PermissionDenied},
		"a second open": {func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest {
			return &ordersv1.StreamOrdersRequest{Open: createdQueue("bad"), Acks: []*ordersv1.StreamAck{byID(d.GetDeliveryId())}}
		}, codes.InvalidArgument},
		"no action": {func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest {
			return &ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{byID(d.GetDeliveryId()), {Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: d.GetDeliveryId()}}}}
		}, codes.InvalidArgument},
		"no delivery": {func(d *ordersv1.StreamDelivery) *ordersv1.StreamOrdersRequest {
			return &ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{byID(d.GetDeliveryId()), {Action: ordersv1.AckAction_ACK_ACTION_ACK}}}
		}, codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			consumer := fmt.Sprintf("bad-%d", len(name))
			open := createdQueue(consumer)
			open.MaxInFlight = 1
			stream, _ := n.streamOrders(t, open)
			d := nextResponse(t, stream).GetDeliveries()[0]
			if err := stream.Send(c.bad(d)); err != nil {
				t.Fatal(err)
			}
			expectStreamEnd(t, stream, c.code)
			// Nothing acked: the event stays unacknowledged (it would be
			// redelivered after its ack wait), its ack floor where it was.
			// An ack sent by mistake went out on the node's connection
			// before the stream ended; an in-progress ack on the same
			// connection, once confirmed, was processed after it.
			n.ack(t, ordersv1.AckAction_ACK_ACTION_IN_PROGRESS, d.GetAckToken())
			if info := n.consumerInfo(t, consumer); info.NumAckPending != 1 || info.AckFloor.Stream != 0 {
				t.Fatalf("after the bad message: %d unacked, ack floor %d; want 1 and 0", info.NumAckPending, info.AckFloor.Stream)
			}
		})
	}
}

// expectStreamEnd reads the stream until it ends, and wants code.
func expectStreamEnd(t *testing.T, stream orderStream, code codes.Code) {
	t.Helper()
	for {
		_, err := stream.Recv()
		if err == nil {
			continue // deliveries or heartbeats sent before the bad message
		}
		if status.Code(err) != code || err == io.EOF {
			t.Fatalf("stream ended with %v, want %v", err, code)
		}
		if code == codes.InvalidArgument && status.Convert(err).Message() == "" {
			t.Fatalf("no message in %v", err)
		}
		return
	}
}

// The first message must open the stream with a valid request.
func TestStreamOrdersFirstMessageMustOpen(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for name, first := range map[string]*ordersv1.StreamOrdersRequest{
		"no open":           {Acks: []*ordersv1.StreamAck{{Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: 1}, Action: ordersv1.AckAction_ACK_ACTION_ACK}}},
		"empty":             {},
		"no consumer":       {Open: &ordersv1.ConsumeOrdersRequest{MaxInFlight: 10}},
		"bad max_in_flight": {Open: &ordersv1.ConsumeOrdersRequest{Consumer: "x", MaxInFlight: 100_000}},
	} {
		t.Run(name, func(t *testing.T) {
			stream, err := n.client.StreamOrders(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(first); err != nil {
				t.Fatal(err)
			}
			expectStreamEnd(t, stream, codes.InvalidArgument)
		})
	}
}

// A delivery terminated on the stream with a reason becomes a dead letter
// with that reason; redriven, it comes again on the stream (attempt 1) and
// is acked there.
func TestStreamOrdersTermMakesADeadLetterAndRedriveComesBack(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order := n.create(t)
	open := limitedQueue("pull-term", 5, time.Minute)
	stream, _ := n.streamOrders(t, open)
	d := nextResponse(t, stream).GetDeliveries()[0]
	if err := stream.Send(&ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{{
		Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: d.GetDeliveryId()},
		Action:   ordersv1.AckAction_ACK_ACTION_TERM, Reason: "warehouse has no such SKU",
	}}}); err != nil {
		t.Fatal(err)
	}
	if r := nextResponse(t, stream).GetAckResults(); len(r) != 1 || !r[0].GetConfirmed() || r[0].GetDeliveryId() != d.GetDeliveryId() {
		t.Fatalf("TERM result: %v", r)
	}
	l := n.awaitDeadLetters(t, "pull-term", 1)[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED || l.GetTermReason() != "warehouse has no such SKU" ||
		l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
		t.Fatalf("dead letter %v", l)
	}

	if _, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "pull-term", Ids: []uint64{l.GetId()}}); err != nil {
		t.Fatal(err)
	}
	again := nextResponse(t, stream).GetDeliveries()
	if len(again) != 1 || again[0].GetEvent().GetSequence() != order.GetRevision() || again[0].GetDeliveryAttempt() != 1 ||
		again[0].GetEvent().GetOrder().GetRevision() != order.GetRevision() {
		t.Fatalf("redriven delivery: %v", again)
	}
	settle(t, stream, ordersv1.AckAction_ACK_ACTION_ACK, again[0].GetDeliveryId())
	if r := nextResponse(t, stream).GetAckResults(); len(r) != 1 || !r[0].GetConfirmed() {
		t.Fatalf("ack of the redriven delivery: %v", r)
	}
	if letters := n.deadLetters(t, "pull-term"); len(letters) != 0 {
		t.Errorf("dead letters after the redrive and ack: %v", letters)
	}
}

// NAK and IN_PROGRESS on the stream: a nak'ed delivery comes back on the
// stream with attempt 2 and a new delivery_id (the old one is no longer
// held: acking it sends nothing); an extended one stays held, and its ack
// later is confirmed.
func TestStreamOrdersNakAndInProgress(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.createMany(t, 2)
	open := createdQueue("pull-nak")
	open.MaxInFlight = 2
	open.Settings = &ordersv1.ConsumerSettings{AckWait: dur(time.Minute)}
	stream, _ := n.streamOrders(t, open)
	var got []*ordersv1.StreamDelivery
	for len(got) < 2 {
		got = append(got, nextResponse(t, stream).GetDeliveries()...)
	}
	naked, extended := got[0], got[1]
	settle(t, stream, ordersv1.AckAction_ACK_ACTION_IN_PROGRESS, extended.GetDeliveryId())
	settle(t, stream, ordersv1.AckAction_ACK_ACTION_NAK, naked.GetDeliveryId())
	var again *ordersv1.StreamDelivery
	results := 0
	for again == nil || results < 2 {
		res := nextResponse(t, stream)
		for _, r := range res.GetAckResults() {
			if !r.GetConfirmed() {
				t.Fatalf("ack %v: %s", r.GetDelivery(), r.GetError())
			}
			results++
		}
		for _, d := range res.GetDeliveries() {
			again = d
		}
	}
	if again.GetEvent().GetSequence() != naked.GetEvent().GetSequence() || again.GetDeliveryAttempt() != 2 || again.GetDeliveryId() <= extended.GetDeliveryId() {
		t.Fatalf("after the NAK: %v", again)
	}
	settle(t, stream, ordersv1.AckAction_ACK_ACTION_ACK, naked.GetDeliveryId(), extended.GetDeliveryId(), again.GetDeliveryId())
	byID := map[uint64]*ordersv1.StreamAckResult{}
	for len(byID) < 3 {
		for _, r := range nextResponse(t, stream).GetAckResults() {
			byID[r.GetDeliveryId()] = r
		}
	}
	if r := byID[naked.GetDeliveryId()]; r.GetConfirmed() || r.GetError() == "" {
		t.Errorf("ack of the nak'ed delivery's old id: %v", r)
	}
	if !byID[extended.GetDeliveryId()].GetConfirmed() || !byID[again.GetDeliveryId()].GetConfirmed() {
		t.Errorf("acks: %v", byID)
	}
	waitForInfo(t, n, "pull-nak", func(pending, unacked uint64) bool { return pending == 0 && unacked == 0 })
}
