// Command ordersbench measures ordersd against a direct nats.go client
// doing the same work, in the same process and the same run: it starts an
// ordersd node in process (embedded JetStream, gRPC over loopback TCP, the
// code path of the binary), runs each workload through ordersd and
// directly against the same NATS server, and prints a table of rates,
// ratios and latencies, also written as JSON.
//
//	go run ./cmd/ordersbench                # the default run, about three and a half minutes
//	go run ./cmd/ordersbench -duration 5s -workloads create,transition
//	go run ./cmd/ordersbench -workloads create -partitions 0,1,3   # one node, each layout in turn
//	go run ./cmd/ordersbench -workloads cluster -partitions 0,1,3  # three ordersd processes, each layout in turn
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
)

// options are the benchmark's flags.
type options struct {
	duration       time.Duration
	listEvents     int
	concurrency    []int
	transitionC    int
	consumeEvents  int
	watchers       int
	watchersAll    int
	watchRate      int
	watchDuration  time.Duration
	watchStep      time.Duration // how long each rate of the watch capacity runs
	watchOverload  time.Duration // how long the overload past the watch capacity runs
	overloadRate   int           // events/s of that overload; 0: 1.5 times the capacity just measured
	reviewDuration time.Duration // how long creates run in the review workload
	reviewCreateC  int           // concurrency of those creates
	reviewWindow   int           // reviews the direct reviewer keeps in flight
	reviewWait     time.Duration // longest wait for the last approval after the creates
	heapOrders     int           // orders stored before the restart of the heap workload
	workloads      map[string]bool
	jsonOut        string
	cpuProfile     string
	syncInterval   time.Duration     // the embedded server's fsync interval; 0: nats-server's default
	syncAlways     bool              // fsync every write before acknowledging it
	partitions     []int             // the layouts to run, each in turn: --partitions of ordersd (0: layout 2)
	layout         eventstore.Layout // the layout of the node being measured, one of partitions
	clusterC       int               // concurrency of the cluster workload's creates
	clusterTime    time.Duration     // how long the cluster workload's creates run, per layout
	ordersdBinary  string            // the ordersd the cluster workload runs; built from ./cmd/ordersd when empty
}

// layoutOnly are the workloads whose direct side reads layout 2's streams
// only (ORDERS, ORDER_IDS, one consumer): they refuse -partitions.
var layoutOnly = []string{"consume", "watch", "review", "list"}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersbench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ordersbench:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("ordersbench", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "how long each side of each throughput workload runs")
	conc := fs.String("concurrency", "1,16,64", "concurrencies of the unary create workload")
	fs.IntVar(&o.transitionC, "transition-concurrency", 64, "concurrency of the transition workload")
	fs.IntVar(&o.consumeEvents, "consume-events", 100_000, "events consumed and acked by each side of the consume workload")
	fs.IntVar(&o.watchers, "watchers", 10_000, "concurrent WatchOrders streams, each following one customer (0: no such row)")
	fs.IntVar(&o.watchersAll, "watchers-all", 100, "concurrent WatchOrders streams, each getting every event (also those of the watch capacity and overload)")
	fs.DurationVar(&o.watchStep, "watch-step", 2*time.Second, "how long each event rate of the watch capacity is published")
	fs.DurationVar(&o.watchOverload, "watch-overload", 12*time.Second, "how long events are published past the watch capacity (0: no overload row)")
	fs.IntVar(&o.overloadRate, "watch-overload-rate", 0, "events per second of the overload row; 0: 1.5 times the capacity the run measured")
	fs.IntVar(&o.watchRate, "watch-rate", 2000, "events per second published during the watch workload")
	fs.DurationVar(&o.watchDuration, "watch-duration", 3*time.Second, "how long events are published during the watch workload")
	fs.IntVar(&o.listEvents, "list-events", 1_000_000, "events of other customers stored before the list workload's ListOrders and GetOrderHistory rows")
	fs.IntVar(&o.heapOrders, "heap-orders", 300_000, "orders stored before the restart of the heap workload")
	fs.DurationVar(&o.reviewDuration, "review-duration", 3*time.Second, "how long each side of the review workload creates orders")
	fs.IntVar(&o.reviewCreateC, "review-create-concurrency", 32, "concurrency of the creates of the review workload")
	fs.IntVar(&o.reviewWindow, "review-window", node.DefaultReviewConcurrency, "reviews the direct reviewer keeps in flight (ordersd's is its default --review-concurrency)")
	fs.DurationVar(&o.reviewWait, "review-wait", time.Minute, "longest wait for the last approval after the creates of the review workload end")
	work := fs.String("workloads", "create,stream,transition,consume,watch,review,list,heap", "workloads to run; also \"cluster\": unary creates over a three-node embedded cluster of ordersd processes")
	parts := fs.String("partitions", "0", "ordersd's --partitions for each layout to run, comma-separated, each in turn (0: layout 2, the one stream ORDERS); consume, watch, review and list run on 0 only")
	fs.IntVar(&o.clusterC, "cluster-concurrency", 64, "concurrency of the cluster workload's creates, spread over the three nodes")
	fs.DurationVar(&o.clusterTime, "cluster-duration", 10*time.Second, "how long the cluster workload's creates run on each layout")
	fs.StringVar(&o.ordersdBinary, "ordersd", "", "the ordersd binary the cluster workload runs; empty: built from ./cmd/ordersd (run from the repository root)")
	fs.StringVar(&o.jsonOut, "json", "ordersbench.json", "file the results are written to as JSON (empty: none)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	sync := fs.String("sync-interval", "", "the embedded server's fsync interval, as ordersd's --sync-interval: a duration, or \"always\"; nats-server's default when empty")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch *sync {
	case "":
	case "always":
		o.syncAlways = true
	default:
		d, err := time.ParseDuration(*sync)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("-sync-interval: %q is neither a positive duration nor \"always\"", *sync)
		}
		o.syncInterval = d
	}
	if o.heapOrders < 1 {
		return o, fmt.Errorf("-heap-orders: %d is not a positive number", o.heapOrders)
	}
	for _, c := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-concurrency: %q is not a positive number", c)
		}
		o.concurrency = append(o.concurrency, n)
	}
	o.workloads = map[string]bool{}
	for _, w := range strings.Split(*work, ",") {
		o.workloads[strings.TrimSpace(w)] = true
	}
	for _, p := range strings.Split(*parts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err == nil {
			err = eventstore.Layout{Partitions: n}.Check()
		}
		if err != nil {
			return o, fmt.Errorf("-partitions: %q: %v", p, err)
		}
		if n > 0 {
			for _, w := range layoutOnly {
				if o.workloads[w] {
					return o, fmt.Errorf("-partitions %d: the %s workload's direct side reads layout 2's streams only; run it with -partitions 0 (or leave it out of -workloads)", n, w)
				}
			}
		}
		o.partitions = append(o.partitions, n)
	}
	if o.clusterC < 1 || o.clusterTime <= 0 {
		return o, fmt.Errorf("-cluster-concurrency and -cluster-duration must be positive, got %d and %s", o.clusterC, o.clusterTime)
	}
	return o, nil
}

// nodeWorkloads reports whether o runs a workload on the in-process node.
func (o options) nodeWorkloads() bool {
	for w := range o.workloads {
		if w != "cluster" {
			return true
		}
	}
	return false
}

// layoutLabel names a layout in the rows of a run that measures other
// layouts than layout 2 alone; empty in a run of layout 2 only, whose rows
// keep their names.
func (o options) layoutLabel(l eventstore.Layout) string {
	if len(o.partitions) == 1 && o.partitions[0] == 0 {
		return ""
	}
	return layoutTag(l)
}

// layoutTag names a layout at the end of a row's name.
func layoutTag(l eventstore.Layout) string {
	if !l.Partitioned() {
		return " [layout 2]"
	}
	if l.Partitions == 1 {
		return " [1 partition]"
	}
	return fmt.Sprintf(" [%d partitions]", l.Partitions)
}

// bench is what every workload works with.
type bench struct {
	o       options
	client  ordersv1.OrderServiceClient
	conn    *grpc.ClientConn
	addr    string
	nc      *nats.Conn // the direct client's own connection
	js      jetstream.JetStream
	connect func(opts ...nats.Option) (*nats.Conn, error)
	results []result
	label   string // the layout of the rows, appended to their names (layoutLabel)
	syncC64 side   // direct synchronous publishing at concurrency 64, for the streamed comparison
}

func run(o options) error {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var results []result
	if o.nodeWorkloads() {
		for _, n := range o.partitions {
			o.layout = eventstore.Layout{Partitions: n}
			rows, err := runNode(o)
			results = append(results, rows...)
			if err != nil {
				return err
			}
		}
	}
	if o.workloads["cluster"] {
		rows, err := runCluster(o)
		results = append(results, rows...)
		if err != nil {
			return err
		}
	}
	printResults(os.Stdout, results)
	if o.jsonOut != "" {
		data, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("\nresults written to %s\n", o.jsonOut)
	}
	return nil
}

// runNode runs the workloads of o on one in-process node of o.layout and
// returns their rows.
func runNode(o options) ([]result, error) {
	dataDir, err := os.MkdirTemp("", "ordersbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)

	keyFile := dataDir + "/ack-token.key"
	// Key files are text: base64 of 32 random bytes, as the recipe of docs/production.md makes.
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("ordersbench-ack-token-key-0123456789"))), 0o600); err != nil {
		return nil, err
	}
	n, err := startBenchNode(o, dataDir, func(cfg *node.Config) {
		cfg.AckTokenKeyFile = keyFile
		// As unbounded as gRPC allows: the bench measures the node, not its
		// guards (a thousand watchers share one client connection).
		cfg.Limits = node.Limits{MaxRecvMsgSize: 4 << 20, MaxConcurrentStreams: math.MaxUint32, MaxWatchers: math.MaxInt, MaxConsumers: math.MaxInt}
	})
	if err != nil {
		return nil, err
	}
	defer n.stop()

	b := &bench{o: o, addr: n.ready.GRPCAddr.String(), connect: n.ready.ConnectNATS, label: o.layoutLabel(o.layout)}
	b.conn, err = grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer b.conn.Close()
	b.client = ordersv1.NewOrderServiceClient(b.conn)
	if b.nc, err = n.ready.ConnectNATS(nats.Name("ordersbench-direct")); err != nil {
		return nil, err
	}
	defer b.nc.Close()
	if b.js, err = jetstream.New(b.nc); err != nil {
		return nil, err
	}

	fmt.Printf("ordersbench: ordersd at %s, embedded JetStream in %s, %s\n\n", b.addr, dataDir, layoutName(o.layout))
	steps := []struct {
		name string
		run  func() error
	}{
		{"create", b.createUnary},
		{"stream", b.createStreamed},
		{"transition", b.transition},
		{"consume", b.consume},
		{"watch", b.watch},
		{"review", b.review},
		{"list", b.listOrders},
		{"heap", b.heapPerOrder},
	}
	for _, s := range steps {
		if !o.workloads[s.name] {
			continue
		}
		began := time.Now()
		if err := s.run(); err != nil {
			return b.results, fmt.Errorf("%s%s: %w", s.name, b.label, err)
		}
		fmt.Printf("  (%s took %s)\n", s.name, time.Since(began).Round(100*time.Millisecond))
	}
	return b.results, nil
}

// printNodes is the per-process table of the cluster rows, if any.
func printNodes(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := false
	for _, r := range results {
		for _, n := range r.Nodes {
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(tw, "cluster row\tprocess\tcpu s\tcpu s per 1,000 creates\tleads\t")
				header = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%s\t\n", r.Workload, n.Name, n.CPUSeconds, n.CPUSecondsPer1000, strings.Join(n.Leads, " "))
		}
	}
	tw.Flush()
}

func orDash(f float64) string {
	if f == 0 {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

// waitServing waits until the node answers.
func (b *bench) waitServing() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.client.GetOrder(context.Background(), &ordersv1.GetOrderRequest{OrderId: "warm-up"})
		if err == nil || strings.Contains(err.Error(), "not found") {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("ordersd not serving after 30s: " + err.Error())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bench) add(r result) {
	r.Workload += b.label
	r.Partitions = b.o.layout.Partitions
	b.results = append(b.results, r)
	fmt.Printf("%-34s direct %9.0f/s   ordersd %9.0f/s   ratio %.2f\n", r.Workload, r.DirectRate, r.OrdersdRate, r.Ratio)
}

// layoutName says which layout a node runs, in its start line.
func layoutName(l eventstore.Layout) string {
	if !l.Partitioned() {
		return "layout 2 (the one stream ORDERS)"
	}
	return fmt.Sprintf("layout 3 with %d partitions", l.Partitions)
}

func printResults(w io.Writer, results []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tdirect/s\tordersd/s\tratio\tdirect p50 ms\tdirect p99 ms\tordersd p50 ms\tordersd p99 ms\tdirect cpu µs/op\tordersd cpu µs/op\ttarget\tmet\t")
	for _, r := range results {
		met := "-"
		if r.Target != "" {
			met = map[bool]string{true: "yes", false: "NO"}[r.Met]
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t\n", r.Workload, r.DirectRate, r.OrdersdRate, r.Ratio,
			r.DirectP50Ms, r.DirectP99Ms, r.OrdersdP50Ms, r.OrdersdP99Ms, orDash(r.DirectCPUUs), orDash(r.OrdersdCPUUs), r.Target, met)
	}
	tw.Flush()
	printNodes(w, results)
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Workload, r.Note)
		}
	}
}

// benchNodeConfig is the configuration of a node the benchmark runs in
// process: embedded JetStream in dataDir, gRPC (and HTTP) on free loopback ports,
// the fsync settings of the run, the review worker off, and the default
// limits.
func benchNodeConfig(o options, dataDir string, onReady func(node.Ready)) node.Config {
	return node.Config{
		GRPCAddr: "127.0.0.1:0", DataDir: dataDir, Replicas: 1,
		HTTPAddr:        "127.0.0.1:0", // on, as by default: the bench calls the gRPC port
		DuplicateWindow: 2 * time.Minute, OpTimeout: 10 * time.Second, ShutdownTimeout: 10 * time.Second,
		SyncInterval: o.syncInterval, SyncAlways: o.syncAlways,
		ReviewConcurrency: node.DefaultReviewConcurrency,
		Partitions:        o.layout.Partitions,
		Limits:            node.DefaultLimits,
		OnReady:           onReady,
	}
}
