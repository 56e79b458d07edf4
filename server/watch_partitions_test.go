package server_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// watchPartitions is the N of the tests of WatchOrders in layout 3.
const watchPartitions = 3

// partitionedNodeOn runs a node of watchPartitions partitions on ns.
func partitionedNodeOn(t *testing.T, ns *natsserver.Server) *testNode {
	t.Helper()
	return startNodeOn(t, ns, func(o *node.ServiceOptions) { o.Layout = eventstore.Layout{Partitions: watchPartitions} })
}

// createApproved creates count orders on n and approves each: two events
// per order, spread over the partitions by their ids.
func (n *testNode) createApproved(t *testing.T, count int) {
	t.Helper()
	for i, o := range n.createMany(t, count) {
		if _, _, err := n.transition(testCtx(t), approved, o.GetOrderId(), fmt.Sprintf("approve-%s-%d", o.GetOrderId(), i), 0); err != nil {
			t.Fatal(err)
		}
	}
}

// partitionReader follows a watch over partitions across reconnects, as a
// client that keeps the resume_position of the last response it handled:
// it checks that every order's events come in its stream's order (each
// order is created, then approved), each once.
type partitionReader struct {
	t        *testing.T
	position string         // of the last response read; "" before the first
	seen     map[string]int // per order, how many of its events were read
	events   int
	streams  int
}

// read opens a watch after the position (every stored event before the
// first) and reads budget events, or up to caught_up with a budget of 0,
// or until it has read want events in all.
func (r *partitionReader) read(n *testNode, budget, want int) {
	r.t.Helper()
	req := &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}, HeartbeatInterval: dur(time.Second)}
	if r.position != "" {
		req.Start = &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: r.position}
	}
	stream, cancel := n.watch(r.t, req)
	defer cancel()
	r.streams++
	toCaughtUp := budget == 0
	for (budget > 0 || toCaughtUp) && r.events < want {
		res, err := stream.Recv()
		if err != nil {
			r.t.Fatalf("after %d events (stream %d): %v", r.events, r.streams, err)
		}
		if res.GetResumePosition() == "" {
			r.t.Fatalf("a response without a resume_position: %v", res)
		}
		if ev := res.GetEvent(); ev != nil {
			id, want := ev.GetOrder().GetOrderId(), created
			if r.seen[id] > 0 {
				want = approved
			}
			if r.seen[id] > 1 || ev.GetOrder().GetStatus() != want {
				r.t.Fatalf("stream %d: order %s: event %d is %v, want %v, each once", r.streams, id, r.seen[id]+1, ev.GetOrder().GetStatus(), want)
			}
			r.seen[id]++
			r.events++
			budget--
		}
		r.position = res.GetResumePosition()
		if toCaughtUp && res.GetCaughtUp() {
			return
		}
	}
}

// On three partitions a watcher that hangs up and resumes after its
// resume_position again and again, while orders are written to every
// partition, and once more after the node and the NATS server restarted,
// sees every event of every order exactly once, each order's in order.
func TestWatchAcrossPartitionsResumesWithoutGapOrRepeat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly, testsupport.StoreDir(dir))
	n := partitionedNodeOn(t, ns)
	const stored, total = 60, 200 // orders, of two events each
	n.createApproved(t, stored)
	written := make(chan struct{})
	go func() {
		defer close(written)
		n.createApproved(t, total-stored)
	}()
	r := &partitionReader{t: t, seen: make(map[string]int)}
	for i := 0; r.events < 2*total; i++ {
		budget := 1 + rand.IntN(60)
		if i%4 == 3 {
			budget = 0
		}
		r.read(n, budget, 2*total)
	}
	<-written
	perPartition := make(map[int]int)
	for id := range r.seen {
		perPartition[eventstore.PartitionOf(id, watchPartitions)]++
	}
	if len(perPartition) != watchPartitions {
		t.Fatalf("the orders fell in partitions %v; the test wants all %d", perPartition, watchPartitions)
	}

	n.kill()
	ns.Shutdown()
	ns.WaitForShutdown()
	again := partitionedNodeOn(t, testsupport.StartNATS(t, testsupport.InProcessOnly, testsupport.StoreDir(dir)))
	const more = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		again.createApproved(t, more)
	}()
	for r.events < 2*(total+more) {
		r.read(again, 10+rand.IntN(40), 2*(total+more))
	}
	<-done
	if len(r.seen) != total+more {
		t.Fatalf("saw events of %d orders, want %d", len(r.seen), total+more)
	}
	for id, events := range r.seen {
		if events != 2 {
			t.Fatalf("order %s: saw %d events, want 2", id, events)
		}
	}
}

// A replay over three partitions sends the stored events merged by stored
// time (ties by partition number), then caught_up once, then the events
// written after it, live, none twice.
func TestWatchReplayMergesPartitionsThenGoesLive(t *testing.T) {
	t.Parallel()
	n := startPartitionedNode(t, watchPartitions)
	const stored = 30
	n.createApproved(t, stored)
	stream, cancel := n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}, HeartbeatInterval: dur(time.Second)})
	defer cancel()
	var (
		last     time.Time
		lastPart int
		seen     = make(map[string]bool) // order id and status
	)
	recv := func() *ordersv1.WatchOrdersResponse {
		t.Helper()
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev := res.GetEvent(); ev != nil {
			key := fmt.Sprintf("%s/%v", ev.GetOrder().GetOrderId(), ev.GetOrder().GetStatus())
			if seen[key] {
				t.Fatalf("event %s sent twice", key)
			}
			seen[key] = true
		}
		return res
	}
	for replayed := 0; ; {
		res := recv()
		if res.GetCaughtUp() {
			if replayed != 2*stored {
				t.Fatalf("caught_up after %d events, want %d", replayed, 2*stored)
			}
			break
		}
		ev := res.GetEvent()
		stored, part := ev.GetPublishTime().AsTime(), eventstore.PartitionOf(ev.GetOrder().GetOrderId(), watchPartitions)
		if stored.Before(last) || (stored.Equal(last) && part < lastPart) {
			t.Fatalf("replayed event %d (partition %d, stored %v) after one of partition %d stored %v", replayed, part, stored, lastPart, last)
		}
		last, lastPart = stored, part
		replayed++
	}
	n.createApproved(t, 10)
	for live, idle := 0, 0; live < 20; {
		res := recv()
		switch {
		case res.GetCaughtUp():
			t.Fatal("caught_up sent twice")
		case res.GetEvent() != nil:
			live, idle = live+1, 0
		case res.GetHeartbeat():
			if idle++; idle == 10 {
				t.Fatalf("%d of the 20 events written after caught_up came live, then 10 heartbeats and nothing", live)
			}
		}
	}
}

// A resume position names the layout it was issued in: a layout-2
// position on a partitioned node and a partitioned one on a layout-2 node
// (same key) are INVALID_ARGUMENT naming why, and so is a start_sequence
// on a partitioned node, with what to use instead.
func TestWatchRefusesPositionsOfAnotherLayoutAndStartSequenceOnPartitions(t *testing.T) {
	t.Parallel()
	one, three := startNode(t), startPartitionedNode(t, watchPartitions)
	one.create(t)
	three.create(t)
	v1, v2 := caughtUpPosition(t, one), caughtUpPosition(t, three)
	for _, tc := range []struct {
		name     string
		n        *testNode
		position string
	}{
		{"layout-2 position on a partitioned node", three, v1},
		{"partitioned position on a layout-2 node", one, v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := watchRefusal(t, tc.n, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: tc.position}})
			if d := resumeAfterViolation(t, err); !strings.Contains(d, "another layout") || !strings.Contains(d, "partitions (layout 3)") {
				t.Fatalf("resume_after refused with %q; want it named a position of another layout", d)
			}
		})
	}
	t.Run("start_sequence on a partitioned node", func(t *testing.T) {
		err := watchRefusal(t, three, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: 1}})
		assertFieldViolation(t, err, "start_sequence")
		if msg := status.Convert(err).Message(); status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "resume_after") {
			t.Fatalf("start_sequence refused with %v; want INVALID_ARGUMENT saying to use resume_after", err)
		}
	})
	// Each node goes on with its own positions.
	for _, tc := range []struct {
		n        *testNode
		position string
	}{{one, v1}, {three, v2}} {
		stream, cancel := tc.n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: tc.position}})
		res, err := stream.Recv()
		if err != nil || !res.GetCaughtUp() {
			t.Fatalf("resuming after its own position: %v, %v; want caught_up", res, err)
		}
		cancel()
	}
}

// On three partitions a watcher that stops reading while more events are
// stored than the node keeps for lagging watchers is ended with
// RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW) that gives its resume_position and
// no start_sequence, in the message or the ErrorInfo; resuming after it
// gives every later event once.
func TestWatcherTooSlowOnPartitionsResumesByPositionOnly(t *testing.T) {
	n := startPartitionedNode(t, watchPartitions) // not in parallel: its burst would slow the package's other tests
	total := consumers.RecentCapacity + 3000
	slow := n.slowWatcher(t)
	n.publishMany(t, total) // while the slow watcher does not read

	seen := make(map[string]bool)
	see := func(ev *ordersv1.OrderEvent) {
		if id := ev.GetOrder().GetOrderId(); seen[id] {
			t.Fatalf("order %s sent twice", id)
		} else {
			seen[id] = true
		}
	}
	var position string
	for {
		res, err := slow.Recv()
		if err != nil {
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted || strings.Contains(st.Message(), "start_sequence") {
				t.Fatalf("slow watcher after %d events: %v; want RESOURCE_EXHAUSTED without a start_sequence", len(seen), err)
			}
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "WATCHER_TOO_SLOW" {
					if _, has := info.GetMetadata()["start_sequence"]; has {
						t.Fatalf("ErrorInfo %v names a start_sequence on partitions", info)
					}
					position = info.GetMetadata()["resume_position"]
				}
			}
			if position == "" || !strings.Contains(st.Message(), strconv.Quote(position)) {
				t.Fatalf("too-slow end %q with resume_position %q", st.Message(), position)
			}
			break
		}
		if ev := res.GetEvent(); ev != nil {
			see(ev)
		}
	}
	if len(seen) >= total {
		t.Fatalf("the slow watcher got all %d events before its end", len(seen))
	}
	resumed, _ := n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: position}})
	for len(seen) < total {
		res, err := resumed.Recv()
		if err != nil {
			t.Fatalf("resumed watcher after %d events: %v", len(seen), err)
		}
		if ev := res.GetEvent(); ev != nil {
			see(ev)
		}
	}
	if res, err := resumed.Recv(); err != nil || !res.GetCaughtUp() {
		t.Fatalf("resumed watcher after the last event: %v, %v; want caught_up", res, err)
	}
}
