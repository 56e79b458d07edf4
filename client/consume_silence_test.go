package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/ordersd/ordersd/client"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// A Consume stream whose node goes silent (its link dead but not closed,
// which keepalive would notice only after a long while, here never) is
// given up after three heartbeat intervals and opened again on the other
// node, which delivers the events created meanwhile (those the silent
// node had taken come back after their ack wait). Without the silence
// detection the stream would stay on the silent node, and nothing would
// arrive.
func TestConsumeAbandonsASilentStream(t *testing.T) {
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
	customer := "silent-consume-" + client.NewRequestID()
	marker := createFor(t, writers[0], customer)
	first := createFor(t, writers[0], customer)

	const ackWait = 3 * time.Second
	opts := createdFrom(marker, ackWait)
	opts.MaxInFlight = 1
	got := newDeliveries()
	stop := consumeInBackground(t, c, "silent-"+client.NewRequestID(), opts, func(_ context.Context, m *client.Message) error {
		got.add(m)
		return nil
	})
	waitFor(t, 20*time.Second, "the first event delivered", func() bool {
		ms, _ := got.of(first.GetOrderId())
		return len(ms) > 0
	})
	stalled, writer := nodes[0], writers[1]
	if peers.last() == nodes[1].Addr() {
		stalled, writer = nodes[1], writers[0]
	}
	stalled.Stall()
	defer stalled.Resume()
	stalledAt := time.Now()
	var later []string
	for range 3 {
		later = append(later, createFor(t, writer, customer).GetOrderId())
	}
	// Measured: about 27 s on an idle machine (the stalled node holds the
	// acks and events it took until their calls and ack waits run out),
	// so the bound leaves room for a loaded one. Without the silence
	// detection nothing arrives however long the wait.
	waitFor(t, 90*time.Second, "the events created after the stall delivered through the other node", func() bool {
		for _, id := range later {
			if ms, _ := got.of(id); len(ms) == 0 {
				return false
			}
		}
		return true
	})
	if peers.last() == stalled.Addr() {
		t.Fatalf("Consume reopened its stream on the stalled node %s", stalled.Addr())
	}
	t.Logf("the events created after the stall arrived within %v of it", time.Since(stalledAt).Round(time.Millisecond))
	if err := stop(); err != nil {
		t.Fatalf("consume: %v", err)
	}
}
