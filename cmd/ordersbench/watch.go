package main

import (
	"context"
	"errors"
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
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Targets of the watch rows.
const (
	watchCustomerP99     = 50 * time.Millisecond  // watchers of one customer each
	watchCustomerMemory  = 16 * 1024              // bytes per watcher, server and client sides together
	watchAllP99          = 100 * time.Millisecond // watchers of every event, and the capacity's bound
	watchCapacityMinRate = 250                    // events/s of the capacity's first step
	watchCapacityGrowth  = 1.5                    // each step's rate over the one before
	watchOverloadFactor  = 1.5                    // the overload's rate over the capacity
)

// watch runs the watch workload four times: many watchers that each
// follow one customer (every event reaches the one watcher of its
// customer), a few watchers that each get every event (the full fan-out),
// the capacity of that fan-out, stepping the event rate up, and a steady
// overload past that capacity.
func (b *bench) watch() error {
	if b.o.watchers > 0 {
		if err := b.watchRun(b.o.watchers, true); err != nil {
			return err
		}
	}
	if err := b.watchRun(b.o.watchersAll, false); err != nil {
		return err
	}
	capacity, err := b.watchCapacity(b.o.watchersAll)
	if err != nil || b.o.watchOverload <= 0 {
		return err
	}
	rate := float64(b.o.overloadRate)
	if rate == 0 {
		rate = max(capacity, watchCapacityMinRate) * watchOverloadFactor
	}
	return b.watchOverload(b.o.watchersAll, rate, capacity)
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

	heapBefore, stackBefore, rssBefore := memoryParts()
	ws, err := b.openWatchers(ctx, watchers, perCustomer)
	if err != nil {
		return err
	}
	defer ws.close(cancel)
	heapAfter, stackAfter, rssAfter := memoryParts()
	perWatcherStack := float64(int64(stackAfter)-int64(stackBefore)) / float64(watchers)
	perWatcherHeap := float64(int64(heapAfter)-int64(heapBefore)) / float64(watchers)
	perWatcherRSS := float64(int64(rssAfter)-int64(rssBefore)) / float64(watchers)

	published, elapsed, err := b.publishSteady(b.o.watchRate, b.o.watchDuration, watchers)
	if err != nil {
		return err
	}
	want := uint64(published) * uint64(watchers)
	if perCustomer {
		want = uint64(published) // each event matches one watcher
	}
	got := ws.waitFor(want, 30*time.Second)
	lat := ws.latencies.Load()

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
		OrdersdP50Ms: ms(lat.quantile(0.5)),
		OrdersdP99Ms: ms(lat.quantile(0.99)),
	}
	r.Ratio = float64(got) / float64(max(want, 1))
	r.Note = fmt.Sprintf("%d of %d deliveries; direct/s is events published per second, ordersd/s deliveries per second to all watchers; the direct latency is one nats.go ordered push subscriber's", got, want)
	if perCustomer { // enough watchers for the memory growth to stand out from the noise
		r.Target = fmt.Sprintf("p99 ≤ %d ms, ≤ %d KiB/watcher", watchCustomerP99.Milliseconds(), watchCustomerMemory/1024)
		r.Met = lat.quantile(0.99) <= watchCustomerP99 && got == want && max(perWatcherRSS, perWatcherHeap) <= watchCustomerMemory
		r.Note += fmt.Sprintf("; memory per watcher: %.1f KiB resident, %.1f KiB Go heap and stacks, of which %.1f KiB stacks (server and client sides together)", perWatcherRSS/1024, perWatcherHeap/1024, perWatcherStack/1024)
	} else {
		r.Target = fmt.Sprintf("p99 ≤ %d ms", watchAllP99.Milliseconds())
		r.Met = lat.quantile(0.99) <= watchAllP99 && got == want
	}
	b.add(r)
	return nil
}

// watchCapacity finds the largest steady rate of deliveries that watchers
// of every event get at p99 ≤ watchAllP99: it publishes at a rate for
// -watch-step, waits for every delivery, and raises the rate by half
// until the p99 of a step goes over, or the deliveries do not all arrive
// within 30 s. The row is the last step within the bound; it returns that
// step's events per second (0 when even the first step was over).
func (b *bench) watchCapacity(watchers int) (float64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws, err := b.openWatchers(ctx, watchers, false)
	if err != nil {
		return 0, err
	}
	defer ws.close(cancel)
	type step struct {
		rate, deliveries float64
		p50, p99         time.Duration
	}
	var (
		best  *step
		steps []string
	)
	for rate := float64(watchCapacityMinRate); ; rate *= watchCapacityGrowth {
		lat := &histogram{}
		ws.latencies.Store(lat)
		before := ws.received.Load()
		published, elapsed, err := b.publishSteady(int(rate), b.o.watchStep, watchers)
		if err != nil {
			return 0, err
		}
		want := uint64(published) * uint64(watchers)
		got := ws.waitFor(before+want, 30*time.Second) - before
		s := step{rate: float64(published) / elapsed.Seconds(), deliveries: float64(got) / elapsed.Seconds(), p50: lat.quantile(0.5), p99: lat.quantile(0.99)}
		steps = append(steps, fmt.Sprintf("%.0f events/s: p99 %.1f ms", s.rate, ms(s.p99)))
		if got < want || s.p99 > watchAllP99 {
			steps[len(steps)-1] += fmt.Sprintf(" (%d of %d delivered)", got, want)
			break
		}
		best = &s
		if s.rate < rate*0.9 {
			break // the publisher itself cannot go faster on this machine
		}
	}
	r := result{
		Workload: fmt.Sprintf("watch capacity, %d watchers of every event", watchers),
		Target:   fmt.Sprintf("(largest deliveries/s at p99 ≤ %d ms)", watchAllP99.Milliseconds()),
		Note:     "steps: " + strings.Join(steps, ", ") + "; direct/s is the events published per second of the last step within the bound, ordersd/s its deliveries per second to all watchers",
	}
	if best == nil {
		b.add(r)
		return 0, nil
	}
	r.DirectRate, r.OrdersdRate, r.Ratio = best.rate, best.deliveries, 1
	r.OrdersdP50Ms, r.OrdersdP99Ms = ms(best.p50), ms(best.p99)
	b.add(r)
	return best.rate, nil
}

// watchOverload publishes rate events/s, past the capacity, to watchers of
// every event for -watch-overload, and compares the latency of the events
// stored in its first third with that of those stored in its last third:
// if lagging watchers cost the node more than live ones, the lag grows for
// as long as the overload lasts and the last third is the later; if it
// settles, the last third is no later than the first. It reports the Go
// heap in use at the end (the node and the watchers' clients together),
// the watchers' gaps and repeats (none is the promise) and how often a
// watcher was told it could not keep up and resumed.
func (b *bench) watchOverload(watchers int, rate, capacity float64) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws, err := b.openWatchers(ctx, watchers, false)
	if err != nil {
		return err
	}
	defer ws.close(cancel)
	heapBefore, _, _ := memoryParts()
	thirds := &storedThirds{start: time.Now(), third: b.o.watchOverload / 3}
	for i := range thirds.h {
		thirds.h[i] = &histogram{}
	}
	ws.latencies.Store(&histogram{})
	ws.thirds.Store(thirds)
	before := ws.received.Load()
	published, elapsed, err := b.publishSteady(int(rate), b.o.watchOverload, watchers)
	if err != nil {
		return err
	}
	want := uint64(published) * uint64(watchers)
	got := ws.waitFor(before+want, 30*time.Second) - before
	heapAfter, _, _ := memoryParts()
	lat := ws.latencies.Load()
	first, last := thirds.p99(0), thirds.p99(2)
	r := result{
		Workload:     fmt.Sprintf("watch overload, %d watchers of every event at %.0f/s", watchers, float64(published)/elapsed.Seconds()),
		DirectRate:   float64(published) / elapsed.Seconds(),
		OrdersdRate:  float64(got) / elapsed.Seconds(),
		Ratio:        float64(got) / float64(max(want, 1)),
		OrdersdP50Ms: ms(lat.quantile(0.5)),
		OrdersdP99Ms: ms(lat.quantile(0.99)),
		Target:       "settles: p99 of the last third ≤ the first's",
		Met:          last <= first && got == want && ws.gaps.Load() == 0 && ws.repeats.Load() == 0,
	}
	within := fmt.Sprintf("%.0f events/s", capacity)
	if capacity == 0 {
		within = "no step within the bound"
	}
	r.Note = fmt.Sprintf("%.0f events/s for %s (the capacity row: %s); events stored in the first third: %s; middle third: %s; last third: %s; "+
		"%d of %d deliveries, %d gaps, %d repeats, %d resumes after a too-slow end; Go heap in use %.1f MiB at the start, %.1f MiB at the end",
		r.DirectRate, b.o.watchOverload, within, thirds.describe(0), thirds.describe(1), thirds.describe(2),
		got, want, ws.gaps.Load(), ws.repeats.Load(), ws.resumes.Load(), float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20))
	b.add(r)
	return nil
}

// storedThirds sorts latencies by the third of a run in which their event
// was stored. Its histograms record latencies divided by thirdsScale, so
// that they reach 20 s in 100 µs buckets: an overload's lag goes past 2 s.
type storedThirds struct {
	start time.Time
	third time.Duration
	h     [3]*histogram
	sum   [3]atomic.Int64 // nanoseconds
}

const thirdsScale = 10

func (t *storedThirds) record(stored time.Time, lat time.Duration) {
	i := int(stored.Sub(t.start) / max(t.third, 1))
	if i < 0 || i >= len(t.h) {
		return
	}
	t.h[i].record(lat / thirdsScale)
	t.sum[i].Add(int64(lat))
}

// p99 is one third's 99th percentile.
func (t *storedThirds) p99(i int) time.Duration { return t.h[i].quantile(0.99) * thirdsScale }

// describe is one third's p99, mean and deliveries.
func (t *storedThirds) describe(i int) string {
	n := t.h[i].count.Load()
	mean := time.Duration(t.sum[i].Load() / int64(max(n, 1)))
	return fmt.Sprintf("p99 %.1f ms, mean %.1f ms, %d deliveries", ms(t.p99(i)), ms(mean), n)
}

// watcherSet is a number of WatchOrders streams being read.
type watcherSet struct {
	wg        sync.WaitGroup
	received  atomic.Uint64
	latencies atomic.Pointer[histogram]    // where receipts are recorded
	thirds    atomic.Pointer[storedThirds] // where they are recorded too, when set
	gaps      atomic.Uint64                // events a watcher of every event got after a missing one
	repeats   atomic.Uint64                // events a watcher of every event got again
	resumes   atomic.Uint64                // streams resumed after ordersd said the watcher could not keep up
	firstErr  atomic.Value
	conns     []*grpc.ClientConn
}

// openWatchers starts watchers WatchOrders streams over 10 connections,
// each following customer-<i> when perCustomer, and returns once every one
// has caught up.
func (b *bench) openWatchers(ctx context.Context, watchers int, perCustomer bool) (*watcherSet, error) {
	ws := &watcherSet{}
	ws.latencies.Store(&histogram{})
	for range 10 {
		conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			ws.close(func() {})
			return nil, err
		}
		ws.conns = append(ws.conns, conn)
	}
	var ready sync.WaitGroup
	for i := range watchers {
		client := ordersv1.NewOrderServiceClient(ws.conns[i%len(ws.conns)])
		req := &ordersv1.WatchOrdersRequest{}
		if perCustomer {
			req.CustomerId = fmt.Sprintf("customer-%d", i)
		}
		stream, err := client.WatchOrders(ctx, req)
		if err != nil {
			ws.close(func() {})
			return nil, err
		}
		ready.Add(1)
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			caughtUp := false
			var last uint64 // sequence of the last event received
			for {
				res, err := stream.Recv()
				if err != nil && ctx.Err() == nil && status.Code(err) == codes.ResourceExhausted && last > 0 {
					// Too slow for the node: resume after the last event, as a client does.
					req.Start = &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: last + 1}
					if stream, err = client.WatchOrders(ctx, req); err == nil {
						ws.resumes.Add(1)
						continue
					}
				}
				if err != nil {
					if !caughtUp {
						ready.Done()
					}
					if ctx.Err() == nil {
						ws.firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				if res.GetCaughtUp() && !caughtUp {
					caughtUp = true
					ready.Done()
				}
				if ev := res.GetEvent(); ev != nil {
					stored := ev.GetPublishTime().AsTime()
					lat := time.Since(stored)
					ws.latencies.Load().record(lat)
					if t := ws.thirds.Load(); t != nil {
						t.record(stored, lat)
					}
					ws.received.Add(1)
					switch seq := ev.GetSequence(); {
					case perCustomer: // a customer's events are not consecutive
					case last != 0 && seq <= last:
						ws.repeats.Add(1)
					case last != 0 && seq > last+1:
						ws.gaps.Add(1)
					}
					last = max(last, ev.GetSequence())
				}
			}
		}()
	}
	ready.Wait()
	if err, ok := ws.firstErr.Load().(error); ok {
		return nil, err
	}
	return ws, nil
}

// waitFor waits until the watchers have received want events in all, or
// for at most d, and returns how many they received.
func (ws *watcherSet) waitFor(want uint64, d time.Duration) uint64 {
	deadline := time.Now().Add(d)
	for ws.received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return ws.received.Load()
}

// close ends the streams (cancel is their context's) and the connections.
func (ws *watcherSet) close(cancel context.CancelFunc) {
	cancel()
	ws.wg.Wait()
	for _, c := range ws.conns {
		_ = c.Close()
	}
}

// publishSteady publishes rate events per second for d, in a batch every
// 5 ms (as many as the rate owes by then), each for one of customers
// customers in turn, and returns how many it published and in how long.
func (b *bench) publishSteady(rate int, d time.Duration, customers int) (int, time.Duration, error) {
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	published := 0
	start := time.Now()
	for time.Since(start) < d {
		<-ticker.C
		owed := int(float64(rate)*time.Since(start).Seconds()) - published
		for range owed {
			order := newDirectOrder()
			order.CustomerId = fmt.Sprintf("customer-%d", published%customers)
			msg := b.directEvent(order, nextRequestID())
			_, err := b.js.PublishMsgAsync(msg, b.expectNew(order))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// JetStream is behind on its acks (a busy machine): let it
				// catch up, then go on; the rate shows the shortfall.
				<-b.js.PublishAsyncComplete()
				_, err = b.js.PublishMsgAsync(msg, b.expectNew(order))
			}
			if err != nil {
				return published, time.Since(start), err
			}
			published++
		}
	}
	elapsed := time.Since(start)
	<-b.js.PublishAsyncComplete()
	return published, elapsed, nil
}

// memoryInUse returns the Go heap and stacks in use and the process's
// resident set size, after a collection that returns free memory to the
// system (so the resident size is close to what is live).
func memoryInUse() (goBytes, rssBytes uint64) {
	goBytes, _, rssBytes = memoryParts()
	return goBytes, rssBytes
}

// memoryParts is memoryInUse with the goroutine stacks' share of the Go
// memory apart.
func memoryParts() (goBytes, stackBytes, rssBytes uint64) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, m.StackInuse, residentBytes()
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
