package faultrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/certgen"
	"github.com/ordersd/ordersd/internal/faultproxy"
)

// process is one ordersd process of the run, restartable with the same
// flags (and so the same ports and data directory).
type process struct {
	name     string
	args     []string
	grpcAddr string
	links    []*faultproxy.Proxy // its paths to NATS, for a stateless replica

	conn   *grpc.ClientConn
	client ordersv1.OrderServiceClient
	health healthpb.HealthClient

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// cluster is the deployment under test: three ordersd nodes whose embedded
// NATS servers form one JetStream cluster with the stream ORDERS on all
// three (R3) over routes that run through cuttable TCP proxies, and
// stateless ordersd replicas that reach those servers through cuttable
// TCP proxies too. Every process is ordersd itself.
type cluster struct {
	dir      string
	command  func(args ...string) *exec.Cmd
	token    string // the NATS token of the embedded servers
	nodes    []*process
	replicas []*process
	natsURLs []string   // the nodes' NATS client addresses, direct
	routes   *routeMesh // the routes between the nodes, each through a cuttable proxy
	inspect  *nats.Conn
	js       jetstream.JetStream
	// stallAfter is how long the run's streams may be silent (stallLimit).
	stallAfter time.Duration
	// balanced reaches every process, balanced by their load reports;
	// nil unless the run's balancing is Weighted.
	balanced       *grpc.ClientConn
	balancedClient ordersv1.OrderServiceClient
	// observers are the run's own NATS connections, one to each node's
	// server alone, through which it sees the work queue's deliveries
	// and consumer leader elections (deliveries.go, leaders.go).
	observers []*nats.Conn
}

// startCluster starts every process and waits until all serve.
func startCluster(ctx context.Context, o Options) (*cluster, error) {
	c := &cluster{dir: o.Dir, command: o.Command, token: randomHex(16), stallAfter: stallLimit(o.OpTimeout)}
	keyFile := filepath.Join(o.Dir, "ack-token.key")
	if err := os.WriteFile(keyFile, []byte(randomHex(32)), 0o600); err != nil {
		return nil, err
	}
	ports, err := freeAddrs(2*3 + o.Replicas)
	if err != nil {
		return nil, err
	}
	natsAddrs, grpcAddrs := ports[0:3], ports[3:]
	routeTLS, err := writeRouteTLS(o.Dir, 3)
	if err != nil {
		return nil, err
	}
	if c.routes, err = newRouteMesh(3); err != nil {
		return nil, err
	}
	common := []string{"--metrics-addr", "", "--http-addr", "", "--review=false", "--replicas", "3", "--ack-token-key-file", keyFile,
		"--nats-timeout", o.OpTimeout.String(), "--shutdown-timeout", "5s", "--log-format", "json"}
	if o.Balancing == Weighted {
		common = append(common, "--orca-min-interval", loadReportInterval.String())
	}
	for i := range 3 {
		name := fmt.Sprintf("node%d", i+1)
		p := &process{name: name, grpcAddr: grpcAddrs[i]}
		p.args = append([]string{"--grpc-addr", p.grpcAddr, "--data-dir", filepath.Join(o.Dir, name),
			"--server-name", name, "--cluster-name", "faultrun", "--cluster-listen", c.routes.listen[i],
			"--cluster-routes", strings.Join(c.routes.routes(i), ","), "--nats-listen", natsAddrs[i],
			// The replicas are ordersd nodes of their own (--nats-url): they write.
			"--nats-listen-access", "full"}, append(routeTLS[i], common...)...)
		c.nodes = append(c.nodes, p)
		c.natsURLs = append(c.natsURLs, "nats://"+natsAddrs[i])
	}
	for i := range o.Replicas {
		p := &process{name: fmt.Sprintf("replica%d", i+1), grpcAddr: grpcAddrs[3+i]}
		var urls []string
		for _, addr := range natsAddrs {
			link, err := faultproxy.New("127.0.0.1:0", addr)
			if err != nil {
				c.close()
				return nil, err
			}
			p.links = append(p.links, link)
			urls = append(urls, "nats://"+link.Addr())
		}
		p.args = append([]string{"--grpc-addr", p.grpcAddr, "--nats-url", strings.Join(urls, ",")}, common...)
		c.replicas = append(c.replicas, p)
	}
	for _, p := range c.all() {
		if err := c.dial(p); err != nil {
			c.close()
			return nil, err
		}
	}
	if o.Balancing == Weighted {
		if err := c.dialBalanced(); err != nil {
			c.close()
			return nil, err
		}
	}
	// The nodes must start together: each waits for its peers to elect a
	// JetStream meta leader.
	for _, p := range c.all() {
		if err := c.start(p); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitServing(ctx, 2*time.Minute); err != nil {
		c.close()
		return nil, err
	}
	c.inspect, err = nats.Connect(strings.Join(c.natsURLs, ","), nats.Token(c.token), nats.MaxReconnects(-1),
		nats.ReconnectWait(200*time.Millisecond), nats.Name("faultrun-inspector"),
		// Its server being killed is the point of the run, not news.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		c.close()
		return nil, fmt.Errorf("connect to the cluster's NATS: %w", err)
	}
	c.js, _ = jetstream.New(c.inspect)
	return c, nil
}

// writeRouteTLS makes a cluster CA and a route certificate for each of n
// nodes under dir: the run's routes use mutual TLS, as production
// clusters must. It returns each node's --cluster-cert, --cluster-key and
// --cluster-ca flags.
func writeRouteTLS(dir string, n int) ([][]string, error) {
	ca, err := certgen.NewCA("faultrun cluster")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "cluster-ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		return nil, err
	}
	flags := make([][]string, n)
	for i := range n {
		name := fmt.Sprintf("node%d", i+1)
		pair, err := ca.Issue(certgen.Leaf{CommonName: name})
		if err != nil {
			return nil, err
		}
		cert, key := filepath.Join(dir, name+"-route.crt"), filepath.Join(dir, name+"-route.key")
		if err := os.WriteFile(cert, pair.CertPEM, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(key, pair.KeyPEM, 0o600); err != nil {
			return nil, err
		}
		flags[i] = []string{"--cluster-cert", cert, "--cluster-key", key, "--cluster-ca", caFile}
	}
	return flags, nil
}

// all is every process: nodes first, then replicas.
func (c *cluster) all() []*process { return append(append([]*process{}, c.nodes...), c.replicas...) }

// dialOptions are those of every client connection of the run.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect soon after a process comes back, as a client behind a
		// load balancer would be switched to a live replica.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second,
		}, MinConnectTimeout: 2 * time.Second})}
}

func (c *cluster) dial(p *process) error {
	conn, err := grpc.NewClient(p.grpcAddr, dialOptions()...)
	if err != nil {
		return err
	}
	p.conn, p.client, p.health = conn, ordersv1.NewOrderServiceClient(conn), healthpb.NewHealthClient(conn)
	return nil
}

// start runs p, logging to <dir>/<name>.log.
func (c *cluster) start(p *process) error {
	logFile, err := os.OpenFile(filepath.Join(c.dir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := c.command(p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The token goes through the environment, out of process lists.
	cmd.Env = append(cmd.Environ(), "ORDERSD_NATS_LISTEN_TOKEN="+c.token, "ORDERSD_NATS_TOKEN="+c.token)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

// kill sends SIGKILL to p and waits for it to exit: no shutdown at all.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM to p and waits for it to shut down in order (a
// rolling restart), killing it if it has not within a minute.
func (p *process) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// running reports whether p's process is alive.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// serving reports whether p answers SERVING.
func (p *process) serving(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := p.health.Check(ctx, &healthpb.HealthCheckRequest{Service: ordersv1.OrderService_ServiceDesc.ServiceName})
	return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// waitServing waits until every process runs and answers SERVING.
func (c *cluster) waitServing(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var down []string
		for _, p := range c.all() {
			if !p.running() {
				log := filepath.Join(c.dir, p.name+".log")
				return fmt.Errorf("%s exited; see %s, which ends:\n%s", p.name, log, logTail(log, 2048))
			}
			if !p.serving(ctx) {
				down = append(down, p.name)
			}
		}
		if len(down) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not SERVING after %v: %s", within, strings.Join(down, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// streamLeader names the node whose NATS server leads the stream ORDERS,
// waiting for one while the stream elects a leader: the repair of a route
// cut can start an election (the node cut from the leader campaigned
// meanwhile, and its higher term makes the leader step down).
func (c *cluster) streamLeader(ctx context.Context) (*process, error) {
	deadline := time.Now().Add(2 * maxElection)
	for {
		leader, err := c.currentStreamLeader(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return leader, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// currentStreamLeader asks the stream for its leader once.
func (c *cluster) currentStreamLeader(ctx context.Context) (*process, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := c.js.Stream(ctx, "ORDERS")
	if err != nil {
		return nil, err
	}
	info := stream.CachedInfo()
	if info.Cluster == nil {
		return nil, fmt.Errorf("the stream has no cluster information")
	}
	for _, p := range c.nodes {
		if p.name == info.Cluster.Leader {
			return p, nil
		}
	}
	return nil, fmt.Errorf("stream leader %q is none of the nodes", info.Cluster.Leader)
}

// close kills every process and closes the proxies and connections.
func (c *cluster) close() {
	for _, p := range c.all() {
		p.kill()
		if p.conn != nil {
			p.conn.Close()
		}
		for _, l := range p.links {
			l.Close()
		}
	}
	if c.routes != nil {
		c.routes.close()
	}
	if c.balanced != nil {
		c.balanced.Close()
	}
	if c.inspect != nil {
		c.inspect.Close()
	}
	for _, o := range c.observers {
		o.Close()
	}
}

// observe connects to each node's NATS server alone (its connection
// stays on that server, reconnecting to it after a restart) and has
// sends and leaders watch through each: the server that sends a delivery
// or an advisory then has a subscriber of the run's on itself, whichever
// routes are cut.
func (c *cluster) observe(sends *SendLog, leaders *leaderLog) error {
	for i, url := range c.natsURLs {
		conn, err := nats.Connect(url, nats.Token(c.token), nats.MaxReconnects(-1), nats.IgnoreDiscoveredServers(),
			nats.ReconnectWait(100*time.Millisecond), nats.Name(fmt.Sprintf("faultrun-observer-%d", i+1)),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			return fmt.Errorf("connect to %s's NATS: %w", c.nodes[i].name, err)
		}
		c.observers = append(c.observers, conn)
		if err := sends.Observe(conn); err != nil {
			return err
		}
		if err := leaders.observe(conn); err != nil {
			return err
		}
	}
	for _, conn := range c.observers {
		if err := conn.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// freeAddrs reserves n loopback addresses; the ports stay the same across
// restarts of a process.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lis = append(lis, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// logTail is the end of a process's log, for an error that must say why
// the process exited even where the log is not kept (a test's temporary
// directory).
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	tail, _ := io.ReadAll(f)
	return string(tail)
}
