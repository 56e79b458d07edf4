package server_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// publishMany stores count created events as a writer would (the event
// codec, on the event's subject in the node's layout) without waiting for
// each ack, to store faster than the watchers read; in layout 2 their
// sequences are consecutive.
func (n *testNode) publishMany(t *testing.T, count int) {
	t.Helper()
	for i := range count {
		msg, err := n.store.Layout().EncodeEvent(&ordersv1.Order{
			OrderId: fmt.Sprintf("many-%d-%d", time.Now().UnixNano(), i), CustomerId: "c", Status: ordersv1.OrderStatus_ORDER_STATUS_CREATED,
			CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}, TotalMinor: 1,
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
		if (i+1)%500 == 0 || i == count-1 { // within the client's limit of acks pending
			select {
			case <-n.js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("the events were not all stored within a minute")
			}
		}
	}
}

// tooSlowResume returns the start_sequence and the resume position that
// a too-slow end of a watch gives, checking that the status says the same
// in its message and in its ErrorInfo; ok is false for any other error.
func tooSlowResume(t *testing.T, err error) (resume uint64, position string, ok bool) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		return 0, "", false
	}
	for _, d := range st.Details() {
		info, isInfo := d.(*errdetails.ErrorInfo)
		if !isInfo || info.GetReason() != "WATCHER_TOO_SLOW" || info.GetDomain() != "ordersd" {
			continue
		}
		resume, perr := strconv.ParseUint(info.GetMetadata()["start_sequence"], 10, 64)
		if perr != nil || resume == 0 {
			t.Fatalf("too-slow end with start_sequence %q", info.GetMetadata()["start_sequence"])
		}
		if !strings.Contains(st.Message(), "start_sequence = "+strconv.FormatUint(resume, 10)) {
			t.Fatalf("too-slow end %q does not name start_sequence %d", st.Message(), resume)
		}
		position := info.GetMetadata()["resume_position"]
		if position == "" || !strings.Contains(st.Message(), strconv.Quote(position)) {
			t.Fatalf("too-slow end %q with resume_position %q", st.Message(), position)
		}
		return resume, position, true
	}
	t.Fatalf("RESOURCE_EXHAUSTED without a WATCHER_TOO_SLOW ErrorInfo: %v", err)
	return 0, "", false
}

// A watcher that stops reading while more events are stored than the node
// keeps for lagging watchers is ended, when it reads again, with
// RESOURCE_EXHAUSTED and the start_sequence after the last event it got;
// the fast watcher beside it is not slowed, the node holds no more than its
// recent events, and the resumed watch gets every later event once.
func TestWatcherTooSlowGetsAResumableEnd(t *testing.T) {
	n := startNode(t) // not in parallel: its burst would slow the package's other tests

	n.create(t)
	// Past the recent events by more than the gRPC buffers and the
	// watcher's live buffer hold, so that they pass it while it does not read.
	total := uint64(consumers.RecentCapacity + 3000)

	slow := n.slowWatcher(t)
	fast, _ := n.watch(t, &ordersv1.WatchOrdersRequest{})
	if res, err := fast.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("fast watcher: %v, %v", res, err)
	}
	firstLive := n.streamMsgs(t, "") + 1
	last := firstLive + total - 1

	fastDone := make(chan error, 1)
	go func() {
		for next := firstLive; next <= last; {
			res, err := fast.Recv()
			if err != nil {
				fastDone <- err
				return
			}
			if ev := res.GetEvent(); ev != nil {
				if ev.GetSequence() != next {
					t.Errorf("fast watcher got %d, want %d", ev.GetSequence(), next)
				}
				next++
			}
		}
		fastDone <- nil
	}()
	n.publishMany(t, int(total))
	if err := <-fastDone; err != nil {
		t.Fatal(err)
	}
	if held := n.monitor.RecentHeld(); held != consumers.RecentCapacity {
		t.Errorf("the node holds %d recent events after %d, want its bound %d", held, total, consumers.RecentCapacity)
	}

	// Reading again: what was sent before the end, in order, then the end.
	got := firstLive - 1
	var position string
	for {
		res, err := slow.Recv()
		if err != nil {
			var (
				resume uint64
				ok     bool
			)
			resume, position, ok = tooSlowResume(t, err)
			if !ok {
				t.Fatalf("slow watcher after %d: %v, want a too-slow end", got, err)
			}
			if resume != got+1 || got >= last-consumers.RecentCapacity {
				t.Fatalf("too-slow end after sequence %d says resume at %d", got, resume)
			}
			break
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != got+1 {
				t.Fatalf("slow watcher got %d after %d", ev.GetSequence(), got)
			}
			got = ev.GetSequence()
		}
	}
	// The end's resume position goes on without a gap or a repeat (the
	// other test here resumes with its start_sequence).
	resumed, _ := n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: position}})
	for got < last {
		res, err := resumed.Recv()
		if err != nil {
			t.Fatalf("resumed watcher after %d: %v", got, err)
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != got+1 {
				t.Fatalf("resumed watcher got %d after %d", ev.GetSequence(), got)
			}
			got = ev.GetSequence()
		}
	}
	if res, err := resumed.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("resumed watcher after the last event: %v, %v; want caught_up", res, err)
	}
}

// Under a burst that many watchers cannot all keep up with (over real
// gRPC, some reading slowly, two pausing until the node's recent events
// have passed them), every watcher sees every event exactly once, in
// order, resuming from the start_sequence of each too-slow end it gets
// (and, as a client does, after an UNAVAILABLE when a replay's read times
// out on a busy machine); the node never holds more than its recent
// events meanwhile.
func TestWatchersUnderOverloadSeeEveryEventOnceOrAResumableEnd(t *testing.T) {
	n := startNode(t) // not in parallel: its burst would slow the package's other tests

	n.create(t) // sequence 1
	const watchers = 8
	total := uint64(consumers.RecentCapacity + 6000) // with the first
	var (
		stored  atomic.Uint64 // events stored so far, a lower bound
		wg      sync.WaitGroup
		resumes atomic.Int64 // after a too-slow end
		// too-slow ends of each of the two watchers that pause
		pausedEnds [2]atomic.Int64
		// after UNAVAILABLE (JetStream did not answer a replay in time)
		unavailable atomic.Int64
		sawMax      atomic.Int64
		// the highest sequence a watcher that does not pause got live:
		// the monitor has fanned out at least that far
		fannedOut atomic.Uint64
	)
	stored.Store(1)
	// The watchers that pause read over fixed 64 KiB windows, so that the
	// server's sends block while they do not read (as over a slow link).
	small, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	var caughtUp sync.WaitGroup // before the burst
	ctx := streamCtx(t)         // bounds the pauses
	for i := range watchers {
		wg.Add(1)
		caughtUp.Add(1)
		go func() {
			defer wg.Done()
			var got uint64
			resumed := false          // after an end: later events may come from a replay
			paused := i >= watchers-2 // these stop once, until the recent events have passed them
			client := n.client
			if paused {
				client = ordersv1.NewOrderServiceClient(small)
			}
			watch := func(req *ordersv1.WatchOrdersRequest) (grpc.ServerStreamingClient[ordersv1.WatchOrdersResponse], context.CancelFunc) {
				ctx, cancel := context.WithCancel(streamCtx(t))
				stream, err := client.WatchOrders(ctx, req)
				if err != nil {
					t.Errorf("watcher %d: %v", i, err)
				}
				return stream, cancel
			}
			stream, cancel := watch(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
			defer func() { cancel() }()
			if stream == nil {
				caughtUp.Done()
				return
			}
			for res, err := stream.Recv(); err != nil || !res.GetCaughtUp(); res, err = stream.Recv() {
				if err != nil {
					t.Errorf("watcher %d before caught_up: %v", i, err)
					caughtUp.Done()
					return
				}
				got = res.GetEvent().GetSequence()
			}
			caughtUp.Done()
			for got < total {
				res, err := stream.Recv()
				if err != nil {
					resume, _, ok := tooSlowResume(t, err)
					switch {
					case !ok && status.Code(err) == codes.Unavailable:
						// A replay's read of the stream timed out on a busy
						// machine: resume as a client does.
						resume = got + 1
						unavailable.Add(1)
					case !ok:
						t.Errorf("watcher %d after %d: %v", i, got, err)
						return
					case resume != got+1:
						t.Errorf("watcher %d: too-slow end after %d says resume at %d", i, got, resume)
						return
					default:
						resumes.Add(1)
						if i >= watchers-2 {
							pausedEnds[i-(watchers-2)].Add(1)
						}
					}
					cancel()
					resumed = true
					if stream, cancel = watch(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: resume}}); stream == nil {
						return
					}
					continue
				}
				ev := res.GetEvent()
				if ev == nil {
					continue
				}
				if ev.GetSequence() != got+1 {
					t.Errorf("watcher %d got sequence %d after %d", i, ev.GetSequence(), got)
					return
				}
				got = ev.GetSequence()
				if i < watchers-2 && !resumed { // a replay may read past the fan-out
					for seen := fannedOut.Load(); seen < got && !fannedOut.CompareAndSwap(seen, got); seen = fannedOut.Load() {
					}
				}
				switch {
				case paused && got == 100:
					paused = false
					// Until the monitor (not only the stream: the fan-out
					// can lag the writer) is past the recent events and
					// the gRPC buffers.
					for fannedOut.Load() < got+consumers.RecentCapacity+3000 {
						if ctx.Err() != nil {
							t.Errorf("watcher %d paused at %d: the fan-out got no further than %d", i, got, fannedOut.Load())
							return
						}
						time.Sleep(time.Millisecond)
					}
				case i%3 == 0 && got%64 == 0:
					time.Sleep(2 * time.Millisecond) // a slow reader
				}
			}
		}()
	}
	caughtUp.Wait()
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for batch := uint64(1000); stored.Load() < total; {
			todo := min(batch, total-stored.Load())
			n.publishMany(t, int(todo))
			stored.Add(todo)
			sawMax.Store(max(sawMax.Load(), int64(n.monitor.RecentHeld())))
		}
	}()
	<-writing
	wg.Wait()
	if held := sawMax.Load(); held > consumers.RecentCapacity {
		t.Errorf("the node held %d recent events, over its bound %d", held, consumers.RecentCapacity)
	}
	t.Logf("%d resumes after a too-slow end (%d and %d of the two watchers that paused), %d after UNAVAILABLE",
		resumes.Load(), pausedEnds[0].Load(), pausedEnds[1].Load(), unavailable.Load())
	for j := range pausedEnds {
		if pausedEnds[j].Load() == 0 {
			t.Errorf("watcher %d paused past the recent events and was never told it could not keep up", watchers-2+j)
		}
	}
}
