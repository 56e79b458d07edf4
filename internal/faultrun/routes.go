package faultrun

import (
	"errors"
	"fmt"
	"net"

	"github.com/ordersd/ordersd/internal/faultproxy"
)

// routeHost is the loopback address the nodes listen on for their cluster
// peers. It is not 127.0.0.1, where the proxies dial from, because of
// nats-server's route gossip: a node that accepts a route tells its other
// peers to open one to the new peer too, at the address the route came
// from (a proxy's, 127.0.0.1) and the port the new peer listens on. On
// 127.0.0.1 that port is a decoy that closes every connection, so a
// gossiped route fails and every route between two nodes runs through
// the proxy that cuts it; otherwise one gossiped direct route would
// survive every cut.
const routeHost = "127.0.0.2"

// routeMesh is the cluster's routes, each through a proxy of its own:
// the route node i opens to node j goes through proxies[i][j], so cutting
// both proxies of a pair cuts those two nodes apart and nothing else.
type routeMesh struct {
	listen  []string              // each node's cluster listen address, on routeHost
	proxies [][]*faultproxy.Proxy // proxies[i][j]: node i's route to node j; nil when i == j
	decoys  []net.Listener        // on 127.0.0.1 at each node's port: see routeHost
}

// newRouteMesh reserves the cluster addresses of n nodes and starts the
// proxies between them.
func newRouteMesh(n int) (m *routeMesh, err error) {
	m = &routeMesh{proxies: make([][]*faultproxy.Proxy, n)}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	for range n {
		decoy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		m.decoys = append(m.decoys, decoy)
		go refuseAll(decoy)
		_, port, _ := net.SplitHostPort(decoy.Addr().String())
		addr := net.JoinHostPort(routeHost, port)
		// The node binds it later; check now that it can.
		probe, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("the fault run's nodes listen for routes on %s, a second loopback address: %w", routeHost, err)
		}
		probe.Close()
		m.listen = append(m.listen, addr)
	}
	for i := range n {
		m.proxies[i] = make([]*faultproxy.Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			if m.proxies[i][j], err = faultproxy.New("127.0.0.1:0", m.listen[j]); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// refuseAll closes every connection lis accepts, until lis is closed.
func refuseAll(lis net.Listener) {
	for {
		c, err := lis.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			c.Close()
		}
	}
}

// routes are the addresses node i's routes go to: its proxies to every
// other node.
func (m *routeMesh) routes(i int) []string {
	var addrs []string
	for j, p := range m.proxies[i] {
		if j != i {
			addrs = append(addrs, p.Addr())
		}
	}
	return addrs
}

// cut closes the routes between nodes a and b, both ways, and refuses new
// ones until restore.
func (m *routeMesh) cut(a, b int) {
	m.proxies[a][b].Cut()
	m.proxies[b][a].Cut()
}

// restore lets nodes a and b open routes to each other again.
func (m *routeMesh) restore(a, b int) {
	m.proxies[a][b].Restore()
	m.proxies[b][a].Restore()
}

// close stops every proxy and decoy.
func (m *routeMesh) close() {
	for _, row := range m.proxies {
		for _, p := range row {
			if p != nil {
				p.Close()
			}
		}
	}
	for _, d := range m.decoys {
		d.Close()
	}
}
