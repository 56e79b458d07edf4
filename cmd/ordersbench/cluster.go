package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
)

// The cluster workload: three ordersd processes whose embedded NATS
// servers form one JetStream cluster (every stream on all three, R3), on
// each layout of -partitions in turn. Creates go to the three nodes'
// gRPC ports alike; what is measured besides their rate and latency is
// the CPU each process spent per 1,000 creates, and which streams it
// leads: the leader of a stream does the extra work of its writes
// (proposing, collecting the followers' acks), so with one partition one
// process pays it, and with three partitions each pays a third. Unlike the
// fault run's cluster (internal/faultrun), routes are direct, without
// proxies or TLS: nothing here is cut.

// clusterSize is the number of ordersd processes of the cluster workload.
const clusterSize = 3

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// nodeFigures are one process's figures of a cluster row.
type nodeFigures struct {
	Name string `json:"name"`
	// CPUSeconds is the process's user and system CPU time over the measured creates.
	CPUSeconds float64 `json:"cpu_s"`
	// CPUSecondsPer1000 is CPUSeconds per 1,000 creates of the whole cluster.
	CPUSecondsPer1000 float64 `json:"cpu_s_per_1000_creates"`
	// Leads are the streams whose leader the process's NATS server was at the end of the run.
	Leads []string `json:"leads"`
}

// runCluster runs the cluster workload on each layout of o.partitions.
func runCluster(o options) ([]result, error) {
	binary := o.ordersdBinary
	if binary == "" {
		dir, err := os.MkdirTemp("", "ordersbench-bin-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "ordersd")
		fmt.Println("ordersbench: building ordersd for the cluster workload")
		build := exec.Command("go", "build", "-o", binary, "github.com/ordersd/ordersd/cmd/ordersd")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("cluster: build ordersd (or pass -ordersd): %w", err)
		}
	}
	var rows []result
	for _, n := range o.partitions {
		l := eventstore.Layout{Partitions: n}
		r, err := clusterCreate(o, binary, l)
		if err != nil {
			return rows, fmt.Errorf("cluster, %s: %w", layoutName(l), err)
		}
		rows = append(rows, r)
		fmt.Printf("%-44s ordersd %9.0f/s   p50 %.3f ms   p99 %.3f ms   %s\n", r.Workload, r.OrdersdRate, r.OrdersdP50Ms, r.OrdersdP99Ms, describeNodes(r.Nodes))
	}
	return rows, nil
}

// describeNodes is the per-process part of a cluster row, on one line.
func describeNodes(nodes []nodeFigures) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %.3f cpu s/1000 (leads %s)", n.Name, n.CPUSecondsPer1000, strings.Join(n.Leads, " ")))
	}
	return strings.Join(parts, "; ")
}

// clusterProcess is one ordersd process of the cluster workload.
type clusterProcess struct {
	name        string
	grpcAddr    string
	metricsAddr string
	cmd         *exec.Cmd
	exited      chan struct{}
	conn        *grpc.ClientConn
	client      ordersv1.OrderServiceClient
}

// clusterCreate starts three ordersd processes of layout l, waits until
// they serve and the partitions' leaders are spread, runs unary creates
// over them, stops them and makes the row.
func clusterCreate(o options, binary string, l eventstore.Layout) (result, error) {
	dir, err := os.MkdirTemp("", "ordersbench-cluster-")
	if err != nil {
		return result{}, err
	}
	procs, err := startClusterProcesses(o, binary, dir, l)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
		if err == nil {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "ordersbench: the cluster's data and logs are kept in %s\n", dir)
		}
	}()
	if err != nil {
		return result{}, err
	}
	if _, err = waitLeadersSpread(procs, l, 2*time.Minute); err != nil {
		return result{}, err
	}
	create := func(w int) (bool, error) {
		_, err := procs[w%len(procs)].client.CreateOrder(context.Background(), benchCreate())
		return false, err
	}
	// A short warm-up, unmeasured: connections, the nodes' caches of
	// streams and consumers, the first elections' after-effects.
	if _, err = runFor(time.Second, o.clusterC, create); err != nil {
		return result{}, err
	}
	before, err := processesCPU(procs)
	if err != nil {
		return result{}, err
	}
	s, err := runFor(o.clusterTime, o.clusterC, create)
	if err != nil {
		return result{}, err
	}
	after, err := processesCPU(procs)
	if err != nil {
		return result{}, err
	}
	leaders, err := waitLeadersSpread(procs, l, 30*time.Second)
	if err != nil {
		return result{}, err
	}
	r := clusterRow(o, l, s, before, after, leaders, procs)
	return r, nil
}

// clusterRow makes the row of a cluster run: the creates' rate and
// latency, and each process's CPU per 1,000 creates and streams led.
func clusterRow(o options, l eventstore.Layout, s side, before, after []time.Duration, leaders map[string]string, procs []*clusterProcess) result {
	r := result{
		Workload:     fmt.Sprintf("cluster create, unary, c=%d", o.clusterC) + layoutTag(l),
		OrdersdRate:  math.Round(s.rate()),
		OrdersdP50Ms: ms(s.lat.quantile(0.5)),
		OrdersdP99Ms: ms(s.lat.quantile(0.99)),
		Partitions:   l.Partitions,
		Note:         "three ordersd processes on this machine, R3; cpu s/1000 is each process's CPU seconds per 1,000 creates of the cluster",
	}
	for i, p := range procs {
		r.Nodes = append(r.Nodes, nodeFigures{
			Name:              p.name,
			CPUSeconds:        math.Round((after[i]-before[i]).Seconds()*1000) / 1000,
			CPUSecondsPer1000: cpuPer1000(after[i]-before[i], s.ops),
			Leads:             streamsLedBy(leaders, p.name),
		})
	}
	return r
}

// cpuPer1000 is cpu per 1,000 of ops, in seconds, to the millisecond.
func cpuPer1000(cpu time.Duration, ops uint64) float64 {
	if ops == 0 {
		return 0
	}
	return math.Round(cpu.Seconds()/float64(ops)*1000*1000) / 1000
}

// streamsLedBy are the streams whose leader is server, sorted.
func streamsLedBy(leaders map[string]string, server string) []string {
	led := []string{}
	for stream, leader := range leaders {
		if leader == server {
			led = append(led, stream)
		}
	}
	slices.Sort(led)
	return led
}

// startClusterProcesses starts the three processes in dir and waits until
// each serves; it returns those it started, also on an error.
func startClusterProcesses(o options, binary, dir string, l eventstore.Layout) ([]*clusterProcess, error) {
	keyFile := filepath.Join(dir, "ack-token.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("ordersbench-ack-token-key-0123456789"))), 0o600); err != nil {
		return nil, err
	}
	addrs, err := freeLoopbackAddrs(3 * clusterSize)
	if err != nil {
		return nil, err
	}
	routes := addrs[2*clusterSize:]
	var procs []*clusterProcess
	for i := range clusterSize {
		p := &clusterProcess{name: fmt.Sprintf("node%d", i+1), grpcAddr: addrs[i], metricsAddr: addrs[clusterSize+i]}
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		args := []string{"--grpc-addr", p.grpcAddr, "--metrics-addr", p.metricsAddr, "--http-addr", "",
			"--data-dir", filepath.Join(dir, p.name), "--server-name", p.name,
			"--cluster-name", "ordersbench", "--cluster-listen", routes[i], "--cluster-routes", strings.Join(peers, ","),
			"--replicas", "3", "--partitions", strconv.Itoa(l.Partitions), "--ack-token-key-file", keyFile,
			"--review=false", "--rebalance-interval", "1s", "--log-format", "json"}
		switch {
		case o.syncAlways:
			args = append(args, "--sync-interval", "always")
		case o.syncInterval > 0:
			args = append(args, "--sync-interval", o.syncInterval.String())
		}
		if err := p.start(binary, dir, args); err != nil {
			return procs, err
		}
		procs = append(procs, p)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, p := range procs {
		if err := p.waitServing(dir, deadline, procs); err != nil {
			return procs, err
		}
	}
	return procs, nil
}

// start runs the process, logging to <dir>/<name>.log.
func (p *clusterProcess) start(binary, dir string, args []string) error {
	logFile, err := os.Create(filepath.Join(dir, p.name+".log"))
	if err != nil {
		return err
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	p.conn, err = grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	p.client = ordersv1.NewOrderServiceClient(p.conn)
	return nil
}

// waitServing waits until the process answers SERVING, or says why not:
// also when one of all, its peers, has exited meanwhile.
func (p *clusterProcess) waitServing(dir string, deadline time.Time, all []*clusterProcess) error {
	health := healthpb.NewHealthClient(p.conn)
	for {
		for _, q := range all {
			select {
			case <-q.exited:
				return fmt.Errorf("%s exited; see %s", q.name, filepath.Join(dir, q.name+".log"))
			default:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: ordersv1.OrderService_ServiceDesc.ServiceName})
		cancel()
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not SERVING in time (%v); see %s", p.name, err, filepath.Join(dir, p.name+".log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM, or SIGKILL if it has not exited
// within half a minute.
func (p *clusterProcess) stop() {
	if p.conn != nil {
		p.conn.Close()
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// processesCPU reads each process's CPU time so far.
func processesCPU(procs []*clusterProcess) ([]time.Duration, error) {
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return nil, err
		}
		if out[i], err = parseProcCPU(string(stat)); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return out, nil
}

// parseProcCPU is utime+stime of a /proc/<pid>/stat line: fields 14 and
// 15, counted after the command name, which is in parentheses and may
// hold spaces.
func parseProcCPU(stat string) (time.Duration, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc stat without a command name: %q", stat)
	}
	fields := strings.Fields(stat[end+1:]) // fields[0] is field 3, the state
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc stat with %d fields after the command name, want 13 or more", len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat CPU time %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// waitLeadersSpread waits until every node's ordersd_stream_leader names
// a leader for each of layout l's streams, the nodes agree, and the
// partitions' leaders are spread one per server as far as they go; it
// returns the leader of each stream.
func waitLeadersSpread(procs []*clusterProcess, l eventstore.Layout, within time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(within)
	for {
		leaders, err := agreedLeaders(procs, node.Streams(l))
		if err == nil {
			err = checkSpread(leaders, l, len(procs))
		}
		if err == nil {
			return leaders, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("stream leaders not spread within %v: %w", within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agreedLeaders reads every node's metric and returns the leader of each
// of streams, if every node names the same one.
func agreedLeaders(procs []*clusterProcess, streams []string) (map[string]string, error) {
	var agreed map[string]string
	for _, p := range procs {
		leaders, err := scrapeLeaders(p.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		for _, s := range streams {
			if leaders[s] == "" {
				return nil, fmt.Errorf("%s knows no leader of %s", p.name, s)
			}
		}
		if agreed == nil {
			agreed = leaders
			continue
		}
		for _, s := range streams {
			if leaders[s] != agreed[s] {
				return nil, fmt.Errorf("the nodes disagree on the leader of %s: %s and %s", s, leaders[s], agreed[s])
			}
		}
	}
	return agreed, nil
}

// checkSpread checks that the partitions' leaders are on as many servers
// as they can be: min(N, servers).
func checkSpread(leaders map[string]string, l eventstore.Layout, servers int) error {
	on := map[string]bool{}
	for _, p := range l.All() {
		on[leaders[p.Stream()]] = true
	}
	if want := min(len(l.All()), servers); len(on) < want {
		return fmt.Errorf("the %d partitions are led by %d servers, want %d", len(l.All()), len(on), want)
	}
	return nil
}

var leaderSeries = regexp.MustCompile(`^ordersd_stream_leader\{([^}]*)\} 1$`)
var seriesLabel = regexp.MustCompile(`(\w+)="([^"]*)"`)

// scrapeLeaders reads ordersd_stream_leader from a node's /metrics.
func scrapeLeaders(addr string) (map[string]string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	res, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, errors.New("/metrics: " + res.Status)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return parseLeaders(string(body)), nil
}

// parseLeaders is the leader of each stream in a Prometheus text
// exposition: the server label of each ordersd_stream_leader series at 1.
func parseLeaders(exposition string) map[string]string {
	leaders := map[string]string{}
	for _, line := range strings.Split(exposition, "\n") {
		m := leaderSeries.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range seriesLabel.FindAllStringSubmatch(m[1], -1) {
			labels[kv[1]] = kv[2]
		}
		if labels["stream"] != "" {
			leaders[labels["stream"]] = labels["server"]
		}
	}
	return leaders
}

// freeLoopbackAddrs reserves n loopback addresses for the processes to
// listen on, on ports below Linux's ephemeral range (32768 and up): a
// route dialled before its peer listens could otherwise be given the very
// port it dials as its own and connect to itself, and the peer then finds
// its port taken.
func freeLoopbackAddrs(n int) ([]string, error) {
	var addrs []string
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for tries := 0; len(addrs) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("no %d free loopback ports found between %d and %d", n, lowPort, lowPort+lowPorts)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lowPort+rand.IntN(lowPorts))))
		if err != nil {
			continue // taken
		}
		lis = append(lis, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// The ports freeLoopbackAddrs picks from: [lowPort, lowPort+lowPorts).
const lowPort, lowPorts = 20000, 12000
