package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// errStop ends a watch in a test.
var errStop = errors.New("stop")

// A replay hands over the stored events, then says it has caught up; a
// watch started again from a saved sequence + 1 goes on from there
// without a repeat.
func TestWatchReplaysCatchesUpAndResumesFromASequence(t *testing.T) {
	c := dialExamplesNode(t)
	customer := "watch-" + client.NewRequestID()
	var ids []string
	for range 5 {
		ids = append(ids, createFor(t, c, customer).GetOrderId())
	}
	ctx := testsupport.Context(t, time.Minute)
	// The review worker approves each: the replay is of ten events once it has.
	waitFor(t, 30*time.Second, "the review worker approves the five orders", func() bool {
		for _, id := range ids {
			res, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
			if err != nil {
				t.Fatalf("get order %s: %v", id, err)
			}
			if res.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
				return false
			}
		}
		return true
	})
	var seqs []uint64
	caughtUpAfter := -1
	err := c.Watch(ctx, client.WatchOptions{CustomerID: customer, ReplayAll: true}, func(_ context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			caughtUpAfter = len(seqs)
			return errStop
		}
		seqs = append(seqs, u.Event.GetSequence())
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("watch: %v", err)
	}
	// Five creates and their approvals.
	if len(seqs) != 10 || caughtUpAfter != 10 {
		t.Fatalf("replay handed over %d events and caught up after %d; want 10 and 10", len(seqs), caughtUpAfter)
	}

	var resumed []uint64
	err = c.Watch(ctx, client.WatchOptions{CustomerID: customer, FromSequence: seqs[6] + 1}, func(_ context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			return errStop
		}
		resumed = append(resumed, u.Event.GetSequence())
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("resumed watch: %v", err)
	}
	if len(resumed) != 3 || resumed[0] != seqs[7] || resumed[2] != seqs[9] {
		t.Fatalf("resumed from %d: %v, want %v", seqs[6]+1, resumed, seqs[7:])
	}
}

// A live watch (from now) whose node dies before any event came misses
// none of the events stored after it began, even those stored (through
// another node) while it was away, and sees each once.
func TestLiveWatchResumesAcrossANodeRestart(t *testing.T) {
	nodes := testnode.StartShared(t, 2, testnode.Options{})
	dial := func(n *testnode.Node) *client.Client {
		c, err := client.Dial(n.Addr(), client.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	watcher, writer := dial(nodes[0]), dial(nodes[1])
	customer := "restart-" + client.NewRequestID()
	before := createFor(t, writer, customer) // stored before the watch began: not handed over

	ctx, cancel := context.WithCancel(testsupport.Context(t, time.Minute))
	updates := make(chan client.WatchUpdate, 100)
	done := make(chan error, 1)
	go func() {
		done <- watcher.Watch(ctx, client.WatchOptions{CustomerID: customer, Heartbeat: time.Second}, func(_ context.Context, u client.WatchUpdate) error {
			updates <- u
			return nil
		})
	}()
	if u := <-updates; !u.CaughtUp {
		t.Fatalf("first update %+v, want caught up", u)
	}
	if err := nodes[0].Kill(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 { // while the watcher's node is away
		ids = append(ids, createFor(t, writer, customer).GetOrderId())
	}
	if err := nodes[0].Restart(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, createFor(t, writer, customer).GetOrderId())

	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < len(ids) {
		select {
		case u := <-updates:
			if u.Event != nil {
				got = append(got, u.Event.GetOrder().GetOrderId())
			}
		case <-timeout:
			t.Fatalf("the watch handed over %v, want %v", got, ids)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	close(updates)
	for u := range updates {
		if u.Event != nil {
			got = append(got, u.Event.GetOrder().GetOrderId())
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("handed over %v, want %v", got, ids)
	}
	for i, id := range ids {
		if got[i] != id || id == before.GetOrderId() {
			t.Fatalf("handed over %v, want %v", got, ids)
		}
	}
}

// streamPeers records the node each WatchOrders stream went to.
type streamPeers struct {
	mu    sync.Mutex // protects addrs
	addrs []string
}

func (p *streamPeers) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (p *streamPeers) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *streamPeers) HandleConn(context.Context, stats.ConnStats)                       {}
func (p *streamPeers) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.OutHeader); ok && h.Client && h.FullMethod == ordersv1.OrderService_WatchOrders_FullMethodName {
		p.mu.Lock()
		p.addrs = append(p.addrs, h.RemoteAddr.String())
		p.mu.Unlock()
	}
}

func (p *streamPeers) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.addrs) == 0 {
		return ""
	}
	return p.addrs[len(p.addrs)-1]
}

// A watch whose node goes silent (its link dead but not closed, which
// keepalive would notice only after a long while, here never) is given up
// after three heartbeat intervals and resumed on the other node, without
// a gap.
func TestWatchAbandonsASilentStream(t *testing.T) {
	nodes := testnode.StartShared(t, 2, testnode.Options{})
	peers := &streamPeers{}
	c, err := client.Dial(nodes[0].Addr()+","+nodes[1].Addr(), client.WithInsecure(),
		client.WithKeepalive(keepalive.ClientParameters{Time: time.Hour, Timeout: time.Hour}),
		client.WithDialOptions(grpc.WithStatsHandler(peers)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	writers := make([]*client.Client, 2) // one per node: the stalled one would hold writes
	for i, n := range nodes {
		if writers[i], err = client.Dial(n.Addr(), client.WithInsecure()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = writers[i].Close() })
	}
	writer := writers[0]
	customer := "silent-" + client.NewRequestID()
	first := createFor(t, writer, customer)

	ctx, cancel := context.WithCancel(testsupport.Context(t, time.Minute))
	defer cancel()
	seqs := make(chan uint64, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, client.WatchOptions{CustomerID: customer, ReplayAll: true, Heartbeat: time.Second}, func(_ context.Context, u client.WatchUpdate) error {
			if u.Event != nil {
				seqs <- u.Event.GetSequence()
			}
			return nil
		})
	}()
	if got := <-seqs; got != first.GetRevision() {
		t.Fatalf("first event %d, want %d", got, first.GetRevision())
	}
	stalled := nodes[0]
	if peers.last() == nodes[1].Addr() {
		stalled, writer = nodes[1], writers[0]
	} else {
		writer = writers[1]
	}
	stalled.Stall()
	defer stalled.Resume()
	var want []uint64
	for range 3 {
		want = append(want, createFor(t, writer, customer).GetRevision())
	}
	timeout := time.After(30 * time.Second)
	for i, w := range want {
		select {
		case got := <-seqs:
			if got != w {
				t.Fatalf("event %d after the stall: sequence %d, want %d", i, got, w)
			}
		case <-timeout:
			t.Fatalf("the watch stayed on its silent node: events %v not handed over", want[i:])
		}
	}
	if peers.last() == stalled.Addr() {
		t.Fatalf("the watch resumed on the stalled node %s", stalled.Addr())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
