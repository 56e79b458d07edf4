package console_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/performance"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// The board under load is measured, not asserted: run it with
//
//	go test ./internal/console -run TestBoardUnderLoad -v -console.load=60s
//
// and read the figures it prints. Without the flag it is skipped.
var (
	loadDuration = flag.Duration("console.load", 0, "measure the board for this long while -console.rate events/s are stored (0: skip)")
	loadRate     = flag.Int("console.rate", 2000, "events stored per second while the board is measured")
)

// frameCounter counts the page's animation frames, and the frames missed
// between two callbacks that came more than 1.5 frame periods apart.
const frameCounter = `(() => {
  const F = window.__frames = { n: 0, missed: 0, worst: 0, last: performance.now(), longTasks: 0, longTaskMs: 0 };
  const period = 1000 / 60;
  const tick = (now) => {
    const dt = now - F.last;
    F.last = now;
    F.n++;
    if (dt > 1.5 * period) F.missed += Math.round(dt / period) - 1;
    F.worst = Math.max(F.worst, dt);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) { F.longTasks++; F.longTaskMs += e.duration; } }).observe({ type: "longtask" });
  return true;
})()`

type frames struct {
	N          int     `json:"n"`
	Missed     int     `json:"missed"`
	Worst      float64 `json:"worst"`
	LongTasks  int     `json:"longTasks"`
	LongTaskMs float64 `json:"longTaskMs"`
}

func TestBoardUnderLoad(t *testing.T) {
	if *loadDuration <= 0 {
		t.Skip("a measurement: run with -console.load=60s (and -v) to print its figures")
	}
	n := testnode.StartT(t, testnode.Options{HTTP: true, Console: true}) // no review: every stored event is a create
	c := dial(t, n, "")
	p := openBrowser(t, "http://"+n.HTTPAddr())
	p.open("#/health") // a page with no stream: the "none" phase

	stored := &atomic.Int64{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- storeAtRate(ctx, c, *loadRate, stored) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("load: %v", err)
		}
	}()

	// The node (this test process: the node and the load) without a board.
	time.Sleep(3 * time.Second)
	idle := measureCPU(15 * time.Second)

	p.open("#/board")
	p.waitFor("the board to be live", `document.querySelector(".board-status").dataset.state === "live"`, 20*time.Second)
	time.Sleep(3 * time.Second) // warm up
	eval[bool](p, frameCounter)
	heapStart, domStart := heap(t, p), eval[int](p, `document.getElementsByTagName("*").length`)
	eventsStart := p.board().Events
	metricsStart := metrics(t, p)

	var p50s, p99s []float64
	cpuStart, storedStart, began := cpuTime(), stored.Load(), time.Now()
	var heaps []string // every 30 s, after a GC
	for i := 1; time.Since(began) < *loadDuration; i++ {
		time.Sleep(time.Second)
		if i%30 == 0 {
			heaps = append(heaps, fmt.Sprintf("%.1f", heap(t, p)/1e6))
		}
		s := p.board()
		if !math.IsNaN(s.DelayP50) {
			p50s, p99s = append(p50s, s.DelayP50), append(p99s, s.DelayP99)
		}
	}
	elapsed := time.Since(began)
	boardCPU := (cpuTime() - cpuStart).Seconds() / elapsed.Seconds()
	storedRate := float64(stored.Load()-storedStart) / elapsed.Seconds()
	f := eval[frames](p, `window.__frames`)
	s := p.board()
	metricsEnd := metrics(t, p)
	heapEnd, domEnd := heap(t, p), eval[int](p, `document.getElementsByTagName("*").length`)

	slices.Sort(p50s)
	slices.Sort(p99s)
	fmt.Printf("board under load: %s at %.0f events/s stored (asked %d/s); the board showed %.0f events/s\n",
		elapsed.Round(time.Second), storedRate, *loadRate, float64(s.Events-eventsStart)/elapsed.Seconds())
	fmt.Printf("  frames: %d in %s (%.1f/s), %d missed (%.2f%%), worst gap %.0f ms; long tasks: %d, %.0f ms in all\n",
		f.N, elapsed.Round(time.Second), float64(f.N)/elapsed.Seconds(), f.Missed, 100*float64(f.Missed)/float64(f.N+f.Missed), f.Worst, f.LongTasks, f.LongTaskMs)
	busy := func(name string) float64 { return 100 * (metricsEnd[name] - metricsStart[name]) / elapsed.Seconds() }
	fmt.Printf("  the page's main thread busy %.0f%% of the time: script %.0f%%, style %.0f%%, layout %.0f%%\n",
		busy("TaskDuration"), busy("ScriptDuration"), busy("RecalcStyleDuration"), busy("LayoutDuration"))
	fmt.Printf("  JS heap after a GC: %.1f MB at the start, %.1f MB at the end (every 30 s: %s MB); DOM elements %d then %d\n", heapStart/1e6, heapEnd/1e6, strings.Join(heaps, ", "), domStart, domEnd)
	if len(p50s) > 0 {
		fmt.Printf("  storage to screen, per second of the run: p50 median %.0f ms; p99 median %.0f ms, worst second %.0f ms\n",
			p50s[len(p50s)/2], p99s[len(p99s)/2], p99s[len(p99s)-1])
	}
	fmt.Printf("  CPU of the node and the load (one process): %.0f%% of a core with no board, %.0f%% with one board open\n", 100*idle, 100*boardCPU)
	if s.Reconnects > 0 {
		t.Errorf("the board reconnected %d times under load", s.Reconnects)
	}
}

// storeAtRate creates orders over one CreateOrders stream at rate a second
// until ctx ends.
func storeAtRate(ctx context.Context, c *api, rate int, stored *atomic.Int64) error {
	stream, err := c.orders.CreateOrders(ctx)
	if err != nil {
		return err
	}
	recvDone := make(chan error, 1)
	go func() {
		for {
			res, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if res.GetError() != nil {
				recvDone <- fmt.Errorf("create: %s %s", res.GetError().GetCode(), res.GetError().GetMessage())
				return
			}
			stored.Add(1)
		}
	}()
	const tick = 5 * time.Millisecond
	perTick := float64(rate) * tick.Seconds()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	began, sent := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			<-recvDone // ends with the stream's context
			return nil
		case err := <-recvDone:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-ticker.C:
		}
		due := int(perTick * float64(time.Since(began)) / float64(tick))
		for ; sent < due; sent++ {
			if err := stream.Send(&ordersv1.CreateOrdersRequest{Order: &ordersv1.CreateOrderRequest{
				CustomerId:   fmt.Sprintf("load-%d", sent%100),
				CurrencyCode: "EUR",
				Items:        []*ordersv1.LineItem{{Sku: "MUG-1", Quantity: 1, UnitPriceMinor: 900}},
			}}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send: %w (%v)", err, <-recvDone)
			}
		}
	}
}

// measureCPU is the process's CPU use over d, in cores.
func measureCPU(d time.Duration) float64 {
	start, began := cpuTime(), time.Now()
	time.Sleep(d)
	return (cpuTime() - start).Seconds() / time.Since(began).Seconds()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heap is the page's used JS heap after a garbage collection, in bytes.
func heap(t *testing.T, p *page) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, heapprofiler.CollectGarbage, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	h, err := chromedp.Call(ctx, cdpruntime.GetHeapUsage, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	return h.UsedSize
}

// metrics are the page's run-time metrics (Performance.getMetrics): the
// main thread's task, script, style and layout time in seconds, and more.
func metrics(t *testing.T, p *page) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, performance.Enable, performance.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Call(ctx, performance.GetMetrics, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, x := range res.Metrics {
		m[x.Name] = x.Value
	}
	return m
}
