package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// watch runs the watch workload twice: many watchers that each follow one
// customer (every event is checked against every watcher, and reaches the
// one that follows its customer), and a few watchers that each get every
// event (the full fan-out, bounded by the CPU that encodes and decodes each
// copy).
func (b *bench) watch() error {
	if err := b.watchRun(b.o.watchers, true); err != nil {
		return err
	}
	return b.watchRun(b.o.watchersAll, false)
}

// watchRun: watchers WatchOrders streams while events are published at a
// steady rate. Latency is from an event's store time to its receipt by a
// watcher; memory per watcher is the growth of the process (server and
// client sides together) once the watchers are connected, divided by their
// number. The direct side is one nats.go ordered push subscriber.
func (b *bench) watchRun(watchers int, perCustomer bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Direct: one ordered consumer on every event.
	directLat := &histogram{}
	js, err := b.nc.JetStream()
	if err != nil {
		return err
	}
	sub, err := js.Subscribe(eventstore.StreamSubjects, func(m *nats.Msg) {
		if meta, err := m.Metadata(); err == nil {
			directLat.record(time.Since(meta.Timestamp))
		}
	}, nats.OrderedConsumer(), nats.DeliverNew())
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	// ordersd: the watchers, over 10 connections.
	heapBefore, rssBefore := memoryInUse()
	var conns []*grpc.ClientConn
	for range 10 {
		conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	watchLat := &histogram{}
	var (
		wg       sync.WaitGroup
		received atomic.Uint64
		ready    sync.WaitGroup
		firstErr atomic.Value
	)
	for i := range watchers {
		client := ordersv1.NewOrderServiceClient(conns[i%len(conns)])
		req := &ordersv1.WatchOrdersRequest{}
		if perCustomer {
			req.CustomerId = fmt.Sprintf("customer-%d", i)
		}
		stream, err := client.WatchOrders(ctx, req)
		if err != nil {
			return err
		}
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			caughtUp := false
			for {
				res, err := stream.Recv()
				if err != nil {
					if !caughtUp {
						ready.Done()
					}
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				if res.GetCaughtUp() && !caughtUp {
					caughtUp = true
					ready.Done()
				}
				if ev := res.GetEvent(); ev != nil {
					watchLat.record(time.Since(ev.GetPublishTime().AsTime()))
					received.Add(1)
				}
			}
		}()
	}
	ready.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	heapAfter, rssAfter := memoryInUse()
	perWatcherHeap := float64(int64(heapAfter)-int64(heapBefore)) / float64(watchers)
	perWatcherRSS := float64(int64(rssAfter)-int64(rssBefore)) / float64(watchers)

	// A steady rate: a batch every 5 ms.
	const tick = 5 * time.Millisecond
	perTick := max(1, b.o.watchRate*int(tick)/int(time.Second))
	ticker := time.NewTicker(tick)
	published := 0
	start := time.Now()
	for time.Since(start) < b.o.watchDuration {
		<-ticker.C
		for range perTick {
			order := newDirectOrder()
			order.CustomerId = fmt.Sprintf("customer-%d", published%watchers)
			if _, err := b.js.PublishMsgAsync(directEvent(order, nextRequestID()), expectNew(order)); err != nil {
				return err
			}
			published++
		}
	}
	ticker.Stop()
	elapsed := time.Since(start)
	<-b.js.PublishAsyncComplete()
	want := uint64(published) * uint64(watchers)
	if perCustomer {
		want = uint64(published) // each event matches one watcher
	}
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	got := received.Load()

	rate := float64(published) / elapsed.Seconds()
	name := fmt.Sprintf("watch all, %d watchers at %.0f/s", watchers, rate)
	if perCustomer {
		name = fmt.Sprintf("watch one customer each, %d watchers at %.0f/s", watchers, rate)
	}
	r := result{
		Workload:     name,
		DirectRate:   rate,
		OrdersdRate:  float64(got) / elapsed.Seconds(),
		DirectP50Ms:  ms(directLat.quantile(0.5)),
		DirectP99Ms:  ms(directLat.quantile(0.99)),
		OrdersdP50Ms: ms(watchLat.quantile(0.5)),
		OrdersdP99Ms: ms(watchLat.quantile(0.99)),
		Target:       "p99 ≤ 50 ms, ≤ 64 KiB/watcher",
	}
	r.Ratio = float64(got) / float64(max(want, 1))
	r.Met = r.OrdersdP99Ms <= 50 && got == want
	r.Note = fmt.Sprintf("%d of %d deliveries; direct/s is events published per second, ordersd/s deliveries per second to all watchers; the direct latency is one nats.go ordered push subscriber's", got, want)
	if perCustomer { // enough watchers for the memory growth to stand out from the noise
		r.Met = r.Met && max(perWatcherRSS, perWatcherHeap) <= 64*1024
		r.Note += fmt.Sprintf("; memory per watcher: %.1f KiB resident, %.1f KiB Go heap and stacks (server and client sides together)", perWatcherRSS/1024, perWatcherHeap/1024)
	} else {
		// A capacity figure, not one of the targets: every watcher gets every event.
		r.Target, r.Met = "", false
	}
	b.add(r)
	return nil
}

// memoryInUse returns the Go heap and stacks in use and the process's
// resident set size, after a collection that returns free memory to the
// system (so the resident size is close to what is live).
func memoryInUse() (goBytes, rssBytes uint64) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, residentBytes()
}

// residentBytes reads VmRSS from /proc/self/status (0 where there is none).
func residentBytes() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
