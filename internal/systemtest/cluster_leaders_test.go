package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
	ordersnode "github.com/ordersd/ordersd/internal/node"
)

// streamLeaders reads the leader of each of ordersd's streams (each with
// --replicas copies) from JetStream's stream info, through node's NATS
// server, and checks that each keeps three copies.
func streamLeaders(ctx context.Context, node *clusterNode) (map[string]string, error) {
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
	for _, name := range ordersnode.Streams(eventstore.Layout{}) {
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
// server leads one or two of the four streams: as even as four leaders
// over three servers can be.
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

// awaitLeaders reads the leaders through node until cond holds of them,
// failing t after d, and returns them.
func awaitLeaders(t *testing.T, d time.Duration, what string, node *clusterNode, cond func(map[string]string) error) map[string]string {
	t.Helper()
	var leaders map[string]string
	eventually(t, d, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if leaders, err = streamLeaders(ctx, node); err != nil {
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
