package faultrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// meshNode is one nats-server of a cluster formed over a routeMesh.
type meshNode struct {
	name string
	ns   *natsserver.Server
	js   jetstream.JetStream
}

// startMeshCluster runs three clustered nats-servers with JetStream in
// the test process, their routes through m, as the fault run's nodes.
func startMeshCluster(t *testing.T, m *routeMesh) []*meshNode {
	t.Helper()
	var nodes []*meshNode
	for i, listen := range m.listen {
		host, p, _ := net.SplitHostPort(listen)
		port, _ := strconv.Atoi(p)
		var routes []string
		for _, r := range m.routes(i) {
			routes = append(routes, "nats-route://"+r)
		}
		name := fmt.Sprintf("n%d", i+1)
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) {
			o.ServerName = name
			o.Cluster.Name, o.Cluster.Host, o.Cluster.Port = "routecut", host, port
			o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		})
		nodes = append(nodes, &meshNode{name: name, ns: ns, js: testsupport.JetStream(t, ns)})
	}
	return nodes
}

// routedPeers names the servers n has a route to, and fails t if n has a
// route it opened on gossip rather than from its configuration: one that
// would bypass the mesh's proxies.
func routedPeers(t *testing.T, n *meshNode) map[string]bool {
	t.Helper()
	rz, err := n.ns.Routez(&natsserver.RoutezOptions{})
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		if r.DidSolicit && !r.IsConfigured {
			t.Fatalf("%s opened a route to %s at %s:%d on gossip, around the proxies", n.name, r.RemoteName, r.IP, r.Port)
		}
		peers[r.RemoteName] = true
	}
	return peers
}

// waitFor polls cond until it returns nil, failing t with its last error
// after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// routesAre checks that each node is routed to exactly the others it is
// meant to reach.
func routesAre(t *testing.T, nodes []*meshNode, want func(a, b int) bool) error {
	for a, n := range nodes {
		got := routedPeers(t, n)
		for b, peer := range nodes {
			if a != b && got[peer.name] != want(a, b) {
				return fmt.Errorf("%s routed to %s: %v", n.name, peer.name, got[peer.name])
			}
		}
	}
	return nil
}

// replicas reads the stream's replicas as its leader sees them, through
// n: the leader's name, and every other replica's state.
func replicas(ctx context.Context, n *meshNode) (leader string, peers map[string]*jetstream.PeerInfo, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := n.js.Stream(ctx, "CUT")
	if err != nil {
		return "", nil, err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", nil, errors.New("no stream leader")
	}
	peers = map[string]*jetstream.PeerInfo{}
	for _, r := range info.Cluster.Replicas {
		peers[r.Name] = r
	}
	return info.Cluster.Leader, peers, nil
}

// behind reports whether a replica lacks entries its leader committed, or
// was not heard from lately.
func behind(p *jetstream.PeerInfo) bool { return p == nil || !p.Current || p.Lag > 0 }

// cutHeld is how long a test watches a cut hold: three times the second
// after which nats-server opens a lost route again.
const cutHeld = 3 * time.Second

// A route cut through the mesh stops all traffic between two nodes of a
// real JetStream cluster, and only theirs: a stream replica on the far
// side of the cut falls behind while the rest commit without it, and
// catches up once the route is restored. With the leader's node cut from
// both others, the two elect a leader of their own while the old one
// still runs: the cluster split in two.
func TestRouteCutsSplitTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	m, err := newRouteMesh(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	nodes := startMeshCluster(t, m)
	all := func(a, b int) bool { return true }
	waitFor(t, 30*time.Second, "the cluster forms", func() error { return routesAre(t, nodes, all) })

	ctx := testsupport.Context(t, 2*time.Minute)
	waitFor(t, 30*time.Second, "the stream is created", func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := nodes[0].js.CreateStream(ctx, jetstream.StreamConfig{Name: "CUT", Subjects: []string{"cut.>"}, Replicas: 3})
		return err
	})
	publish := func(via *meshNode) {
		t.Helper()
		waitFor(t, 30*time.Second, "a publish on "+via.name, func() error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := via.js.Publish(ctx, "cut.x", []byte("x"))
			return err
		})
	}
	index := func(name string) int {
		for i, n := range nodes {
			if n.name == name {
				return i
			}
		}
		t.Fatalf("no node %q", name)
		return -1
	}
	// allCurrent waits until the leader sees every replica caught up, and
	// returns the leader's index.
	allCurrent := func(what string) int {
		t.Helper()
		var leader string
		waitFor(t, 30*time.Second, what, func() error {
			l, peers, err := replicas(ctx, nodes[0])
			if err != nil {
				return err
			}
			if len(peers) != 2 {
				return fmt.Errorf("leader %s sees %d other replicas", l, len(peers))
			}
			for name, p := range peers {
				if behind(p) {
					return fmt.Errorf("leader %s sees %s behind: %+v", l, name, *p)
				}
			}
			leader = l
			return nil
		})
		return index(leader)
	}
	publish(nodes[0])
	l := allCurrent("every replica is current")
	f, other := (l+1)%3, (l+2)%3

	// One route cut: the leader and one follower no longer reach each other.
	m.cut(l, f)
	waitFor(t, 10*time.Second, "the route is gone", func() error {
		return routesAre(t, nodes, func(a, b int) bool { return !(a == l && b == f || a == f && b == l) })
	})
	cutPair := func(a, b int) bool { return !(a == l && b == f || a == f && b == l) }
	publish(nodes[l])
	waitFor(t, 10*time.Second, "the cut follower falls behind, unheard of for "+cutHeld.String(), func() error {
		if err := routesAre(t, nodes, cutPair); err != nil {
			t.Fatalf("the cut did not hold: %v", err)
		}
		leader, peers, err := replicas(ctx, nodes[l])
		switch {
		case err != nil:
			return err
		case leader != nodes[l].name:
			return fmt.Errorf("the leader is %s", leader)
		case behind(peers[nodes[other].name]):
			return fmt.Errorf("%s, on both sides of the cut, is behind", nodes[other].name)
		case !behind(peers[nodes[f].name]) || peers[nodes[f].name].Active < cutHeld:
			return fmt.Errorf("%s is not behind, or heard from %v ago", nodes[f].name, peers[nodes[f].name].Active)
		}
		return nil
	})
	m.restore(l, f)
	waitFor(t, 30*time.Second, "the route is back", func() error { return routesAre(t, nodes, all) })
	l = allCurrent("the cut follower catches up")

	// The leader's node cut off: the other two elect a leader between them.
	m.cut(l, (l+1)%3)
	m.cut(l, (l+2)%3)
	alone := func(a, b int) bool { return a != l && b != l }
	waitFor(t, 10*time.Second, "the leader's node is alone", func() error { return routesAre(t, nodes, alone) })
	majority := nodes[(l+1)%3]
	waitFor(t, 2*maxElection, "the majority elects a leader of its own", func() error {
		if err := routesAre(t, nodes, alone); err != nil {
			t.Fatalf("the cut did not hold: %v", err)
		}
		leader, _, err := replicas(ctx, majority)
		if err != nil {
			return err
		}
		if leader == nodes[l].name {
			return fmt.Errorf("the leader is still %s", leader)
		}
		return nil
	})
	if !nodes[l].ns.Running() {
		t.Fatalf("%s stopped: the split is to leave it running", nodes[l].name)
	}
	publish(majority)
	waitFor(t, 10*time.Second, "the cut-off node falls behind", func() error {
		_, peers, err := replicas(ctx, majority)
		if err != nil {
			return err
		}
		if !behind(peers[nodes[l].name]) {
			return fmt.Errorf("%s, cut off, is not behind", nodes[l].name)
		}
		return nil
	})
	m.restore(l, (l+1)%3)
	m.restore(l, (l+2)%3)
	waitFor(t, 30*time.Second, "the routes are back", func() error { return routesAre(t, nodes, all) })
	allCurrent("the cut-off node catches up")
}
