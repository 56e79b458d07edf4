package server_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// storeMany creates count orders straight through the event store, from 8
// goroutines, to fill the stream fast.
func (n *testNode) storeMany(t *testing.T, count int) {
	t.Helper()
	var wg sync.WaitGroup
	per := count / 8
	for w := range 8 {
		todo := per
		if w == 7 {
			todo = count - 7*per
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range todo {
				if _, err := n.store.Create(context.Background(), eventstore.NewOrder{
					CustomerID: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}},
				}); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A watcher that disconnects and reconnects with start_sequence = last + 1,
// again and again while 5,000 events are written, sees exactly the stream:
// every sequence, in order, once.
func TestWatchResumesWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const total = 5000
	n.create(t) // the stream exists before the watcher starts
	written := make(chan struct{})
	go func() {
		defer close(written)
		n.storeMany(t, total-1)
	}()

	var last uint64
	reconnects := 0
	for last < total {
		req := &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}}
		if last > 0 {
			req.Start = &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: last + 1}
		}
		stream, cancel := n.watch(t, req)
		budget := 200 + rand.IntN(600) // events to read before hanging up
		for budget > 0 && last < total {
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("after sequence %d: %v", last, err)
			}
			if ev := res.GetEvent(); ev != nil {
				if ev.GetSequence() != last+1 {
					t.Fatalf("got sequence %d after %d", ev.GetSequence(), last)
				}
				last = ev.GetSequence()
				budget--
			}
		}
		cancel()
		reconnects++
	}
	<-written
	if reconnects < 5 {
		t.Errorf("only %d connections; the test wants several", reconnects)
	}
	if got := n.streamMsgs(t, ""); got != total {
		t.Fatalf("stream holds %d events, watcher saw %d", got, last)
	}
}

// A watcher that stops reading holds no more than its bounded buffer: it
// leaves the live fan-out, the others keep getting every event promptly,
// and when it reads again it catches up from the stream with nothing
// missing.
func TestSlowWatcherIsThrottledAndDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	const total = 3000

	slow := n.slowWatcher(t)
	fast, _ := n.watch(t, &ordersv1.WatchOrdersRequest{})
	if res, err := fast.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("fast watcher: %v, %v", res, err)
	}
	firstLive := n.streamMsgs(t, "") + 1

	var worst time.Duration
	fastDone := make(chan error, 1)
	go func() {
		next := firstLive
		for next < firstLive+total {
			res, err := fast.Recv()
			if err != nil {
				fastDone <- err
				return
			}
			if ev := res.GetEvent(); ev != nil {
				if ev.GetSequence() != next {
					t.Errorf("fast watcher got %d, want %d", ev.GetSequence(), next)
				}
				worst = max(worst, time.Since(ev.GetPublishTime().AsTime()))
				next++
			}
		}
		fastDone <- nil
	}()
	n.storeMany(t, total)
	if err := <-fastDone; err != nil {
		t.Fatal(err)
	}
	if worst > 5*time.Second {
		t.Errorf("the fast watcher lagged up to %v behind", worst)
	}
	// The slow watcher overflowed its buffer and left the fan-out.
	if got := n.monitor.Watchers(); got != 1 {
		t.Errorf("%d watchers in the live fan-out, want only the fast one", got)
	}

	// Reading again, the slow watcher gets everything, in order.
	next := firstLive
	for next < firstLive+total {
		res, err := slow.Recv()
		if err != nil {
			t.Fatalf("slow watcher after %d: %v", next, err)
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != next {
				t.Fatalf("slow watcher got %d, want %d", ev.GetSequence(), next)
			}
			next++
		}
	}
}

func TestWatchFiltersAndStartPositions(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	a := n.create(t)
	if _, _, err := n.transition(testCtx(t), approved, a.GetOrderId(), "", 0); err != nil {
		t.Fatal(err)
	}
	req := validCreate("")
	req.CustomerId = "bob"
	bobs, err := n.client.CreateOrder(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	afterBob := time.Now()
	c := n.create(t)

	// replayed reads a watch until caught_up and returns the sequences seen.
	replayed := func(req *ordersv1.WatchOrdersRequest) []uint64 {
		t.Helper()
		stream, cancel := n.watch(t, req)
		defer cancel()
		var seqs []uint64
		for {
			res, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if res.GetCaughtUp() {
				return seqs
			}
			seqs = append(seqs, res.GetEvent().GetSequence())
		}
	}
	all := &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}
	for name, tc := range map[string]struct {
		req  *ordersv1.WatchOrdersRequest
		want []uint64
	}{
		"everything":            {&ordersv1.WatchOrdersRequest{Start: all}, []uint64{1, 2, 3, 4}},
		"approved only":         {&ordersv1.WatchOrdersRequest{Start: all, Statuses: []ordersv1.OrderStatus{approved}}, []uint64{2}},
		"one order":             {&ordersv1.WatchOrdersRequest{Start: all, OrderId: a.GetOrderId()}, []uint64{1, 2}},
		"one order, one status": {&ordersv1.WatchOrdersRequest{Start: all, OrderId: a.GetOrderId(), Statuses: []ordersv1.OrderStatus{created}}, []uint64{1}},
		"one customer":          {&ordersv1.WatchOrdersRequest{Start: all, CustomerId: "bob"}, []uint64{bobs.GetOrder().GetRevision()}},
		"from a sequence":       {&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: 3}}, []uint64{3, 4}},
		"from a time":           {&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartTime{StartTime: timestamppb.New(afterBob)}}, []uint64{c.GetRevision()}},
		"past the end":          {&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: 99}}, nil},
		"only new events":       {&ordersv1.WatchOrdersRequest{}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := replayed(tc.req)
			if len(got) != len(tc.want) {
				t.Fatalf("got sequences %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got sequences %v, want %v", got, tc.want)
				}
			}
		})
	}

	// After caught_up: live events that match, and heartbeats while idle.
	stream, _ := n.watch(t, &ordersv1.WatchOrdersRequest{CustomerId: "bob", HeartbeatInterval: dur(time.Second)})
	if res, err := stream.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("first message %v, %v: want caught_up", res, err)
	}
	n.create(t) // not bob's
	if _, err := n.client.CancelOrder(testCtx(t), &ordersv1.CancelOrderRequest{OrderId: bobs.GetOrder().GetOrderId()}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil || res.GetEvent().GetOrder().GetStatus() != cancelled || res.GetEvent().GetOrder().GetCustomerId() != "bob" {
		t.Fatalf("live event %v, %v: want bob's cancellation", res, err)
	}
	if res, err := stream.Recv(); err != nil || !res.GetHeartbeat() {
		t.Fatalf("idle stream sent %v, %v: want a heartbeat", res, err)
	}
}

func TestStreamingRequestValidation(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	watchErr := func(req *ordersv1.WatchOrdersRequest) error {
		stream, err := n.client.WatchOrders(testCtx(t), req)
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	}
	consumeErr := func(req *ordersv1.ConsumeOrdersRequest) error {
		stream, err := n.client.ConsumeOrders(testCtx(t), req)
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	}
	okConsume := func(edit func(*ordersv1.ConsumeOrdersRequest)) *ordersv1.ConsumeOrdersRequest {
		req := &ordersv1.ConsumeOrdersRequest{Consumer: "v", Settings: &ordersv1.ConsumerSettings{}}
		edit(req)
		return req
	}
	for name, c := range map[string]struct {
		err   error
		field string
	}{
		"watch: unknown status":       {watchErr(&ordersv1.WatchOrdersRequest{Statuses: []ordersv1.OrderStatus{99}}), "statuses[0]"},
		"watch: unspecified status":   {watchErr(&ordersv1.WatchOrdersRequest{Statuses: []ordersv1.OrderStatus{0}}), "statuses[0]"},
		"watch: repeated status":      {watchErr(&ordersv1.WatchOrdersRequest{Statuses: []ordersv1.OrderStatus{created, created}}), "statuses[1]"},
		"watch: order id with a dot":  {watchErr(&ordersv1.WatchOrdersRequest{OrderId: "a.b"}), "order_id"},
		"watch: customer with a star": {watchErr(&ordersv1.WatchOrdersRequest{CustomerId: "*"}), "customer_id"},
		"watch: start sequence 0":     {watchErr(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{}}), "start_sequence"},
		"watch: invalid start time":   {watchErr(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartTime{StartTime: &timestamppb.Timestamp{Nanos: -1}}}), "start_time"},
		"watch: empty resume_after":   {watchErr(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{}}), "resume_after"},
		"watch: tiny heartbeat":       {watchErr(&ordersv1.WatchOrdersRequest{HeartbeatInterval: dur(time.Millisecond)}), "heartbeat_interval"},
		"consume: no consumer":        {consumeErr(&ordersv1.ConsumeOrdersRequest{}), "consumer"},
		"consume: consumer with '>'":  {consumeErr(&ordersv1.ConsumeOrdersRequest{Consumer: "a>"}), "consumer"},
		"consume: unknown status":     {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) { r.Statuses = []ordersv1.OrderStatus{-3} })), "statuses[0]"},
		"consume: max in flight":      {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) { r.MaxInFlight = 100_000 })), "max_in_flight"},
		"consume: negative in flight": {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) { r.MaxInFlight = -1 })), "max_in_flight"},
		"consume: ack wait too short": {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) { r.Settings.AckWait = dur(time.Millisecond) })), "settings.ack_wait"},
		"consume: max deliveries":     {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) { r.Settings.MaxDeliveries = -2 })), "settings.max_deliveries"},
		"consume: backoff too long": {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) {
			r.Settings.Backoff = []*durationpb.Duration{dur(time.Second), dur(100 * time.Hour)}
		})), "settings.backoff[1]"},
		"consume: backoff vs deliveries": {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) {
			r.Settings.Backoff, r.Settings.MaxDeliveries = []*durationpb.Duration{dur(time.Second), dur(2 * time.Second)}, 2
		})), "settings.max_deliveries"},
		"consume: start sequence 0": {consumeErr(okConsume(func(r *ordersv1.ConsumeOrdersRequest) {
			r.Settings.Start = &ordersv1.ConsumerSettings_StartSequence{}
		})), "settings.start_sequence"},
	} {
		t.Run(name, func(t *testing.T) {
			assertFieldViolation(t, c.err, c.field)
		})
	}
}

// A watcher of new events only never gets events stored before its call,
// even when it joins before the node's monitor has seen any event and then
// falls behind (it catches up from where it started, not from the start of
// the stream).
func TestNewEventsOnlyNeverReplaysOlderOnes(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.storeMany(t, 20) // before any watcher: the monitor has seen nothing
	old := n.streamMsgs(t, "")
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The stream outlasts storing the events (streamCtx): on a busy machine
	// that alone can take testCtx's 20 s.
	watch, err := ordersv1.NewOrderServiceClient(conn).WatchOrders(streamCtx(t), &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("%v, %v", res, err)
	}
	n.storeMany(t, 2000) // more than the watcher's live buffer while it does not read
	for next := old + 1; next <= old+2000; {
		res, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != next {
				t.Fatalf("got sequence %d, want %d (the first %d events were stored before the call)", ev.GetSequence(), next, old)
			}
			next++
		}
	}
}

// slowWatcher opens a WatchOrders stream of every event, read past its
// caught_up, on a connection of its own with fixed 64 KiB windows: once
// the test stops reading it, the server's sends block. The stream
// outlasts storing the events (streamCtx): on a busy machine that alone
// can take testCtx's 20 s.
func (n *testNode) slowWatcher(t *testing.T) ordersv1.OrderService_WatchOrdersClient {
	t.Helper()
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	slow, err := ordersv1.NewOrderServiceClient(conn).WatchOrders(streamCtx(t), &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := slow.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("slow watcher: %v, %v", res, err)
	}
	return slow
}
