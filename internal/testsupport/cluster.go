package testsupport

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// clusterFormTimeout bounds the election of a test cluster's meta leader.
const clusterFormTimeout = 30 * time.Second

// NATSCluster is n nats-servers with JetStream, started in the test
// process, that form one JetStream cluster over loopback routes: the
// servers n1, n2, … of Servers. Stop and Start stop one and start it
// again on the same ports and data, as a node restarted by its operator.
type NATSCluster struct {
	t       testing.TB
	Servers []*natsserver.Server
	opts    []*natsserver.Options
}

// StartNATSCluster starts a cluster of n servers and waits until it has
// elected its meta leader. The servers are shut down when the test ends.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	addrs, routes := make([]*net.TCPAddr, n), make([]string, n)
	for i := range n {
		addrs[i] = freeAddr(t)
		routes[i] = "nats-route://" + addrs[i].String()
	}
	clients := make([]*net.TCPAddr, n)
	for i := range n {
		clients[i] = freeAddr(t)
	}
	c := &NATSCluster{t: t, Servers: make([]*natsserver.Server, n), opts: make([]*natsserver.Options, n)}
	for i := range n {
		c.opts[i] = &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clients[i].Port,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			Cluster:    natsserver.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: addrs[i].Port},
			Routes:     natsserver.RoutesFromStr(strings.Join(routes, ",")),
		}
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.Servers {
			c.Stop(i)
		}
	})
	c.waitFormed()
	return c
}

// Start starts server i (again), on its ports and data: a client
// connected to its ClientURL reconnects.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	opts := *c.opts[i]
	ns, err := natsserver.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("start NATS %s: %v", opts.ServerName, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(startTimeout) {
		c.t.Fatalf("NATS %s not ready within %s", opts.ServerName, startTimeout)
	}
	c.Servers[i] = ns
}

// Stop shuts server i down, if it runs.
func (c *NATSCluster) Stop(i int) {
	if ns := c.Servers[i]; ns != nil && ns.Running() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// waitFormed waits until one of the servers is the meta leader and sees
// every server online with JetStream: before that, a stream with as many
// replicas as servers finds no placement ("no suitable peers").
func (c *NATSCluster) waitFormed() {
	c.t.Helper()
	deadline := time.Now().Add(clusterFormTimeout)
	for time.Now().Before(deadline) {
		for _, ns := range c.Servers {
			if ns.JetStreamIsLeader() && len(ns.JetStreamClusterPeers()) == len(c.Servers) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no JetStream meta leader seeing all %d servers within %s", len(c.Servers), clusterFormTimeout)
}

// freeAddr is a free loopback address, for a port that must be known
// before the server that listens on it starts (a route).
func freeAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr)
}
