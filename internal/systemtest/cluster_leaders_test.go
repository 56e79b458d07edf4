package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/cli"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/leaders"
	ordersnode "github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// streamLeaders reads the leader of each of ordersd's streams in layout l
// (each with --replicas copies) from JetStream's stream info, through
// node's NATS server, and checks that each keeps three copies.
func streamLeaders(ctx context.Context, node *clusterNode, l eventstore.Layout) (map[string]string, error) {
	nc, err := node.nats()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	leaders := map[string]string{}
	for _, name := range ordersnode.Streams(l) {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info := stream.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil {
			return nil, fmt.Errorf("stream %s: %d replicas, cluster %v", name, info.Config.Replicas, info.Cluster)
		}
		leaders[name] = info.Cluster.Leader
	}
	return leaders, nil
}

// spread says whether every stream has a leader among servers and every
// server leads one or two of the streams: as even as four or five
// leaders over three servers can be.
func spread(leaders map[string]string, servers []string) error {
	led := map[string]int{}
	for stream, server := range leaders {
		if !slices.Contains(servers, server) {
			return fmt.Errorf("stream %s led by %q, none of %v", stream, server, servers)
		}
		led[server]++
	}
	for _, s := range servers {
		if led[s] < 1 || led[s] > 2 {
			return fmt.Errorf("%s leads %d streams: %v", s, led[s], leaders)
		}
	}
	return nil
}

// awaitLeaders reads the leaders of layout 2's streams through node until
// cond holds of them, failing t after d, and returns them.
func awaitLeaders(t *testing.T, d time.Duration, what string, node *clusterNode, cond func(map[string]string) error) map[string]string {
	t.Helper()
	return awaitLayoutLeaders(t, d, what, node, eventstore.Layout{}, cond)
}

// awaitLayoutLeaders is awaitLeaders of the streams of layout l.
func awaitLayoutLeaders(t *testing.T, d time.Duration, what string, node *clusterNode, l eventstore.Layout, cond func(map[string]string) error) map[string]string {
	t.Helper()
	var leaders map[string]string
	eventually(t, d, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if leaders, err = streamLeaders(ctx, node, l); err != nil {
			return err
		}
		return cond(leaders)
	})
	return leaders
}

// On a three-node embedded cluster of ordersd processes with the four
// streams at three replicas, the leaders are spread once the cluster
// serves: every node leads one or two of them, as JetStream's own stream
// info says (JetStream alone places each leader at random: 45 of the 81
// placements of four leaders over three servers are uneven). Then the node leading ORDERS
// is SIGKILLed: the two survivors take over its leaderships. It is
// started again on its data, and the rebalance (the meta leader's, every
// second here) hands leaderships back to it once it has caught up, until
// every node leads one or two again.
func TestStreamLeadersSpreadOverTheClusterAndBackAfterANodeReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster of ordersd processes")
	}
	began := time.Now()
	nodes := startChildCluster(t, "--rebalance-interval", "1s")
	servers := []string{nodes[0].name, nodes[1].name, nodes[2].name}
	start := awaitLeaders(t, 60*time.Second, "leaders spread after the start", nodes[0], func(l map[string]string) error { return spread(l, servers) })
	t.Logf("cluster formed and leaders spread in %v: %v", time.Since(began).Round(time.Millisecond), start)

	var victim *clusterNode
	var survivors []*clusterNode
	for _, n := range nodes {
		if n.name == start[eventstore.StreamName] {
			victim = n
		} else {
			survivors = append(survivors, n)
		}
	}
	if err := victim.kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	alive := []string{survivors[0].name, survivors[1].name}
	after := awaitLeaders(t, 60*time.Second, "the survivors lead every stream", survivors[0], func(l map[string]string) error {
		for stream, server := range l {
			if !slices.Contains(alive, server) {
				return fmt.Errorf("stream %s led by %q", stream, server)
			}
		}
		return nil
	})
	t.Logf("%s killed; %v later the survivors lead every stream: %v", victim.name, time.Since(killed).Round(time.Millisecond), after)

	victim.restart()
	restarted := time.Now()
	back := awaitLeaders(t, 90*time.Second, "leaders spread again after the node returned", survivors[0], func(l map[string]string) error { return spread(l, servers) })
	t.Logf("%s serves again; %v later the leaders are spread again: %v", victim.name, time.Since(restarted).Round(time.Millisecond), back)
}

// On a three-node embedded cluster with three partitions, `ordersd
// rebalance` makes each node lead one partition: the partitions take the
// orders' writes, so they are spread on their own, and the dead letters
// and redrives even out the totals (two, two and one of the five
// streams). The leaders are first moved by hand to a placement whose
// totals are even but whose partitions are not (n1 leads two of them, n2
// the dead letters and the redrives), which a plan of all five streams
// together would leave as it is. The nodes run with --rebalance=false,
// so that nothing moves but the command.
func TestRebalanceSpreadsPartitionsOnePerNode(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster of ordersd processes")
	}
	layout := eventstore.Layout{Partitions: 3}
	nodes := startChildCluster(t, "--rebalance=false", "--partitions", "3")
	servers := []string{nodes[0].name, nodes[1].name, nodes[2].name}
	placed := awaitLayoutLeaders(t, 60*time.Second, "every stream with a leader", nodes[0], layout, func(map[string]string) error { return nil })

	nc, err := nodes[0].nats()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	uneven := map[string]string{"ORDERS_0": "n1", "ORDERS_1": "n1", "ORDERS_2": "n3", deadletters.Stream: "n2", deadletters.RedriveStream: "n2"}
	for stream, server := range uneven {
		if placed[stream] == server {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := leaders.StepDown(ctx, nc, leaders.Move{Stream: stream, From: placed[stream], To: server})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	awaitLayoutLeaders(t, 60*time.Second, "the placement made by hand", nodes[0], layout, func(l map[string]string) error {
		if !maps.Equal(l, uneven) {
			return fmt.Errorf("leaders %v, want %v", l, uneven)
		}
		return nil
	})

	var stdout, stderr bytes.Buffer
	args := []string{"rebalance", "--nats-url", nodes[0].natsURL, "--nats-token", nodes[0].natsToken, "--partitions", "3",
		"--ack-token-key-file", testsupport.AckKeyFile(t), "--log-level", "warn"}
	if code := cli.Main(testsupport.Context(t, time.Minute), args, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("ordersd %v: exit %d\n%s%s", args, code, stdout.String(), stderr.String())
	}
	after := awaitLayoutLeaders(t, 30*time.Second, "one partition led by each node", nodes[0], layout, func(l map[string]string) error {
		partitions := map[string]string{}
		for _, p := range layout.All() {
			partitions[p.Stream()] = l[p.Stream()]
		}
		for _, s := range servers {
			if n := countLed(partitions, s); n != 1 {
				return fmt.Errorf("%s leads %d partitions: %v", s, n, partitions)
			}
		}
		return spread(l, servers)
	})
	t.Logf("leaders after ordersd rebalance from %v: %v\n%s", uneven, after, stdout.String())
}

// countLed is the number of streams in leaders that server leads.
func countLed(leaders map[string]string, server string) int {
	n := 0
	for _, l := range leaders {
		if l == server {
			n++
		}
	}
	return n
}

// A node reports the leader of each of its streams in
// ordersd_stream_leader: on one embedded server, that server leads them
// all.
func TestStreamLeaderMetricNamesEachStreamsLeader(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir(), "--server-name", "solo")
	base := "http://" + ready.MetricsAddr.String()
	eventually(t, 20*time.Second, "every stream's leader in the metric", func() error {
		body := get(t, base+"/metrics", http.StatusOK)
		var missing []string
		for _, name := range ordersnode.Streams(eventstore.Layout{}) {
			if line := `ordersd_stream_leader{server="solo",stream="` + name + `"} 1`; !strings.Contains(body, line) {
				missing = append(missing, line)
			}
		}
		if n := strings.Count(body, "\nordersd_stream_leader{"); n != len(ordersnode.Streams(eventstore.Layout{})) {
			return fmt.Errorf("%d series of ordersd_stream_leader, want %d (missing %v)", n, len(ordersnode.Streams(eventstore.Layout{})), missing)
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %v", missing)
		}
		return nil
	})
}
