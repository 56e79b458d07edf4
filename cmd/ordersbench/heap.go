package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/node"
)

// heapWindow is the duplicate window of the heap workload's node: short,
// so that it has passed by the restart and JetStream holds no message ids,
// only what it keeps for every stored message and subject.
const heapWindow = time.Second

// heapPerOrder measures the Go heap a node holds for each stored order
// once it has restarted: JetStream keeps an in-memory index entry for every
// subject of a stream, on every replica, and every order has subjects of
// its own, so this is what grows with history. It stores the orders (their
// index entry, created and approved events, as ordersd writes them) on a
// node of its own, restarts that node after the duplicate window has
// passed, and compares the settled heap with that of the same node
// restarted empty. The benchmark's main node idles meanwhile and is in
// both figures alike. The direct side is the rate the orders were stored
// at, the ordersd side the rate of GetOrder on stored orders after the
// restart.
func (b *bench) heapPerOrder() error {
	empty, err := heapAfterRestart(b.o, 0)
	if err != nil {
		return err
	}
	full, err := heapAfterRestart(b.o, b.o.heapOrders)
	if err != nil {
		return err
	}
	perOrder := (float64(full.heap) - float64(empty.heap)) / float64(b.o.heapOrders)
	r := compare(fmt.Sprintf("heap after a restart, %d orders", b.o.heapOrders), full.stored, full.reads, 0)
	r.HeapBytesPerOrder = math.Round(perOrder)
	r.Note = fmt.Sprintf("%.0f bytes of Go heap per stored order (index entry, created and approved events: three subjects) after a restart with the duplicate window passed: "+
		"%.1f MiB with %d orders against %.1f MiB with none; resident %.1f MiB against %.1f MiB; direct/s is orders stored per second, ordersd/s GetOrder calls per second after the restart",
		perOrder, float64(full.heap)/(1<<20), b.o.heapOrders, float64(empty.heap)/(1<<20), float64(full.rss)/(1<<20), float64(empty.rss)/(1<<20))
	b.add(r)
	return nil
}

// restartedHeap is what heapAfterRestart measured.
type restartedHeap struct {
	heap, rss uint64 // settled Go heap in use, and resident size, after the restart
	stored    side   // storing the orders, before the restart
	reads     side   // GetOrder of stored orders, after it
}

// heapAfterRestart stores orders on a node of its own, restarts it once
// the duplicate window has passed, and measures the process's heap once it
// has settled.
func heapAfterRestart(o options, orders int) (restartedHeap, error) {
	dir, err := os.MkdirTemp("", "ordersbench-heap-")
	if err != nil {
		return restartedHeap{}, err
	}
	defer os.RemoveAll(dir)
	var m restartedHeap

	short := func(c *node.Config) { c.DuplicateWindow = heapWindow }
	first, err := startBenchNode(o, dir, short)
	if err != nil {
		return m, err
	}
	ids, stored, err := storeOrders(o, first, orders)
	first.stop()
	if err != nil {
		return m, err
	}
	m.stored = stored
	time.Sleep(heapWindow + time.Second) // the window passes before the restart: no message id is loaded again

	second, err := startBenchNode(o, dir, short)
	if err != nil {
		return m, err
	}
	defer second.stop()
	m.heap, m.rss = settledHeap()
	if len(ids) > 0 {
		if m.reads, err = readOrders(second, ids); err != nil {
			return m, err
		}
	}
	return m, nil
}

// storeOrders stores count orders of two events each, with their index
// entries, through the node's NATS as a direct client, and returns their
// ids and the rate they were stored at.
func storeOrders(o options, n *benchNode, count int) ([]string, side, error) {
	nc, err := n.ready.ConnectNATS(nats.Name("ordersbench-heap"))
	if err != nil {
		return nil, side{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, side{}, err
	}
	b := &bench{o: o, js: js}
	ids := make([]string, 0, count)
	start, cpu0 := time.Now(), cpuTime()
	var pending []*nats.Msg
	var opts []jetstream.PublishOpt
	err = b.storeEvents(3*count, func() (*nats.Msg, jetstream.PublishOpt) {
		if len(pending) == 0 {
			order := newDirectOrder()
			ids = append(ids, order.GetOrderId())
			entry, expectNoEntry := b.claimEntry(order)
			created := b.directEvent(order, nextRequestID())
			approved := proto.CloneOf(order)
			approved.Status = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
			pending = []*nats.Msg{entry, created, b.directEvent(approved, nextRequestID())}
			// The approval's expected revision is left out: set-up, not the measured path.
			opts = []jetstream.PublishOpt{expectNoEntry, b.expectNew(order), jetstream.WithExpectStream(o.layout.Of(order.GetOrderId()).Stream())}
		}
		msg, opt := pending[0], opts[0]
		pending, opts = pending[1:], opts[1:]
		return msg, opt
	})
	return ids, side{ops: uint64(len(ids)), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: &histogram{}}, err
}

// readOrders calls GetOrder on the stored orders for a second, through the
// restarted node, to show it serves them.
func readOrders(n *benchNode, ids []string) (side, error) {
	conn, err := grpc.NewClient(n.ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return side{}, err
	}
	defer conn.Close()
	client := ordersv1.NewOrderServiceClient(conn)
	var next int
	return runFor(time.Second, 1, func(int) (bool, error) {
		id := ids[next%len(ids)]
		next += 7919 // a prime stride: reads spread over the stored orders
		_, err := client.GetOrder(context.Background(), &ordersv1.GetOrderRequest{OrderId: id})
		return false, err
	})
}

// settledHeap collects garbage and reads the heap in use until two
// readings a second apart differ by less than 1% (JetStream drops the
// block caches of its recovery a few seconds after a restart), for at
// most 30 s, and returns the last reading and the resident size.
func settledHeap() (heap, rss uint64) {
	read := func() uint64 {
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	last := read()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now := read()
		settled := math.Abs(float64(now)-float64(last)) < 0.01*float64(last)
		last = now
		if settled {
			break
		}
	}
	return last, residentBytes()
}

// benchNode is a node the benchmark runs in process.
type benchNode struct {
	ready node.Ready
	stop  func() // cancels the node and waits for its shutdown
}

// startBenchNode starts a node with benchNodeConfig on dataDir, changed
// by tune, and waits until it serves.
func startBenchNode(o options, dataDir string, tune func(*node.Config)) (*benchNode, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan node.Ready, 1)
	done := make(chan error, 1)
	cfg := benchNodeConfig(o, dataDir, func(r node.Ready) { ready <- r })
	tune(&cfg)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- node.Run(ctx, cfg, log) }()
	n := &benchNode{stop: func() { cancel(); <-done }}
	select {
	case n.ready = <-ready:
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("ordersd did not start: %w", err)
	}
	conn, err := grpc.NewClient(n.ready.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.stop()
		return nil, err
	}
	defer conn.Close()
	if err := (&bench{client: ordersv1.NewOrderServiceClient(conn)}).waitServing(); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}
