package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// rebalance runs `ordersd rebalance` with args and returns its exit
// status and output.
func rebalance(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(testsupport.Context(t, time.Minute), append([]string{rebalanceCommand}, args...), func(string) string { return "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// `ordersd rebalance --nats-url` on a three-server cluster whose streams
// ORDERS, ORDER_IDS and ORDERS_DEAD_LETTERS (three replicas each) are all
// led by n1: it moves two of them, prints the moves and the placement,
// and leaves one leader per server, as the streams' info says. Run again,
// it has nothing to move.
func TestRebalanceCommandSpreadsTheLeaders(t *testing.T) {
	c := testsupport.StartNATSCluster(t, 3)
	nc := testsupport.Connect(t, c.Servers[0])
	js, _ := jetstream.New(nc)
	ctx := testsupport.Context(t, time.Minute)
	streams := []string{eventstore.StreamName, eventstore.IndexStreamName, deadletters.Stream}
	for _, name := range streams {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Replicas: 3}); err != nil {
			t.Fatal(err)
		}
	}
	leaderOf := func(name string) string {
		s, err := js.Stream(ctx, name)
		if err != nil || s.CachedInfo().Cluster == nil {
			return ""
		}
		return s.CachedInfo().Cluster.Leader
	}
	preferN1, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": "n1"}})
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range streams {
		for leaderOf(name) != "n1" {
			if time.Now().After(deadline) {
				t.Fatalf("stream %s not moved to n1 within 30s", name)
			}
			_, _ = nc.Request(jetstream.DefaultAPIPrefix+"STREAM.LEADER.STEPDOWN."+name, preferN1, 2*time.Second) // the next look tells
			time.Sleep(100 * time.Millisecond)
		}
	}

	var urls []string
	for _, ns := range c.Servers {
		urls = append(urls, ns.ClientURL())
	}
	args := []string{"--nats-url", strings.Join(urls, ","), "--ack-token-key-file", testsupport.AckKeyFile(t), "--log-level", "warn"}
	code, stdout, stderr := rebalance(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := strings.Count(stdout, "moved: "); n != 2 {
		t.Errorf("%d moves printed, want 2:\n%s", n, stdout)
	}
	led := map[string]string{}
	for _, name := range streams {
		led[name] = leaderOf(name)
		if !strings.Contains(stdout, fmt.Sprintf("stream %s (3 replicas): leader %s", name, led[name])) {
			t.Errorf("placement of %s (leader %s) not printed:\n%s", name, led[name], stdout)
		}
	}
	servers := map[string]bool{}
	for _, l := range led {
		servers[l] = true
	}
	if len(servers) != 3 {
		t.Errorf("leaders after rebalance: %v, want one per server", led)
	}
	code, stdout, stderr = rebalance(t, args...)
	if code != 0 || !strings.Contains(stdout, "nothing to move") {
		t.Errorf("second run: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// Without --nats-url there is no cluster to reach: a usage error.
func TestRebalanceCommandNeedsTheNATSURL(t *testing.T) {
	code, _, stderr := rebalance(t, "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "--nats-url") {
		t.Errorf("exit %d, %q; want 2 naming --nats-url", code, stderr)
	}
}
