package leaders

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// testStreams are the streams the tests spread: three, so that an even
// spread over three servers is one leader each.
var testStreams = []string{"P0", "P1", "P2"}

// createStreams makes each of names with three replicas on cluster c.
func createStreams(t *testing.T, js jetstream.JetStream, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range names {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Replicas: 3}); err != nil {
			t.Fatal(err)
		}
	}
}

// leadersOf reads each stream's leader from its stream info.
func leadersOf(ctx context.Context, js jetstream.JetStream, names []string) (map[string]string, error) {
	led := map[string]string{}
	for _, name := range names {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		if s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "" {
			return nil, fmt.Errorf("stream %s has no leader", name)
		}
		led[name] = s.CachedInfo().Cluster.Leader
	}
	return led, nil
}

// awaitLeaders reads the leaders until cond holds of them, failing t
// after d.
func awaitLeaders(t *testing.T, d time.Duration, what string, js jetstream.JetStream, names []string, cond func(map[string]string) error) map[string]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		led, err := leadersOf(ctx, js, names)
		cancel()
		if err == nil {
			if err = cond(led); err == nil {
				return led
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s: %v", d, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// oneEach says whether each of servers leads exactly one stream.
func oneEach(servers ...string) func(map[string]string) error {
	return func(led map[string]string) error {
		count := map[string]int{}
		for _, s := range led {
			count[s]++
		}
		for _, s := range servers {
			if count[s] != 1 {
				return fmt.Errorf("%s leads %d streams: %v", s, count[s], led)
			}
		}
		return nil
	}
}

// pileOn moves the leader of every stream to server, by stepdowns
// preferring it.
func pileOn(t *testing.T, c *testsupport.NATSCluster, js jetstream.JetStream, names []string, server string) {
	t.Helper()
	nc := testsupport.Connect(t, c.Servers[0])
	awaitLeaders(t, 30*time.Second, "every leader on "+server, js, names, func(led map[string]string) error {
		for stream, l := range led {
			if l != server {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = StepDown(ctx, nc, Move{Stream: stream, From: l, To: server}) // the next look tells
				cancel()
				return fmt.Errorf("%s led by %s", stream, l)
			}
		}
		return nil
	})
}

// Three streams all led by one server: Rebalance moves two of them, one
// to each other server, and leaves one leader per server, as the
// streams' own stream info says.
func TestRebalanceSpreadsStreamsLedByOneServer(t *testing.T) {
	c := testsupport.StartNATSCluster(t, 3)
	nc := testsupport.Connect(t, c.Servers[1])
	js, _ := jetstream.New(nc)
	createStreams(t, js, testStreams)
	pileOn(t, c, js, testStreams, "n1")

	r, err := New(nc, Options{Streams: [][]string{testStreams}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := r.Rebalance(ctx)
	if err != nil {
		t.Fatalf("Rebalance: %v (%+v)", err, rep)
	}
	if len(rep.Moves) != 2 {
		t.Errorf("moves %v, want two", rep.Moves)
	}
	led, err := leadersOf(ctx, js, testStreams)
	if err != nil {
		t.Fatal(err)
	}
	if err := oneEach("n1", "n2", "n3")(led); err != nil {
		t.Error(err)
	}
	t.Logf("moves %v; leaders now %v", rep.Moves, led)
}

// Every server of a cluster runs a Rebalancer, and only the one on the
// meta leader moves leaders. Leaders piled on one server are spread; the
// server leading P0 stops, the others take its leadership, and once it
// is back and caught up a leadership is handed back to it.
func TestRunSpreadsLeadersAgainWhenAServerReturns(t *testing.T) {
	c := testsupport.StartNATSCluster(t, 3)
	inspect := testsupport.Connect(t, c.Servers[0])
	js, _ := jetstream.New(inspect)
	createStreams(t, js, testStreams)
	pileOn(t, c, js, testStreams, "n2")

	ctx, stop := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer func() {
		stop()
		running.Wait()
	}()
	var mu sync.Mutex // protects servers: Start replaces a restarted one
	servers := slices.Clone(c.Servers)
	for i := range c.Servers {
		// Over TCP, so that it reconnects to the server started again.
		nc, err := nats.Connect(c.Servers[i].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		r, err := New(nc, Options{Streams: [][]string{testStreams}, Interval: 200 * time.Millisecond, Timeout: 2 * time.Second, Moves: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return servers[i].Running() && servers[i].JetStreamIsLeader()
		}})
		if err != nil {
			t.Fatal(err)
		}
		running.Go(func() { r.Run(ctx) })
	}
	led := awaitLeaders(t, 30*time.Second, "one leader per server", js, testStreams, oneEach("n1", "n2", "n3"))
	t.Logf("spread: %v", led)

	victim := map[string]int{"n1": 0, "n2": 1, "n3": 2}[led["P0"]]
	if victim == 0 { // keep the test's own connection up
		inspect = testsupport.Connect(t, c.Servers[1])
		js, _ = jetstream.New(inspect)
	}
	c.Stop(victim)
	name := c.Servers[victim].Name()
	led = awaitLeaders(t, 60*time.Second, "the others lead every stream", js, testStreams, func(led map[string]string) error {
		for stream, l := range led {
			if l == name {
				return fmt.Errorf("%s still led by %s", stream, l)
			}
		}
		return nil
	})
	t.Logf("%s stopped: %v", name, led)
	c.Start(victim)
	mu.Lock()
	servers[victim] = c.Servers[victim]
	mu.Unlock()
	led = awaitLeaders(t, 60*time.Second, "one leader per server again", js, testStreams, oneEach("n1", "n2", "n3"))
	t.Logf("%s back: %v", name, led)
}
