package main

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// histogram records latencies in 10 µs buckets up to 2 s (the last bucket
// takes everything longer). It is safe for concurrent use and needs no
// memory per sample, so it can count millions of them.
type histogram struct {
	buckets [200_001]atomic.Uint32
	count   atomic.Uint64
}

const bucketWidth = 10 * time.Microsecond

func (h *histogram) record(d time.Duration) {
	i := int(d / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
}

// quantile returns the latency below which a fraction q of samples fall.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i := range h.buckets {
		seen += uint64(h.buckets[i].Load())
		if seen >= rank {
			return time.Duration(i+1) * bucketWidth
		}
	}
	return time.Duration(len(h.buckets)) * bucketWidth
}

// side is one measured run: a number of operations over a span of time.
type side struct {
	ops     uint64
	elapsed time.Duration
	cpu     time.Duration // CPU time the whole process used meanwhile
	lat     *histogram
}

// cpuPerOp is the CPU time of the whole process (client, ordersd and NATS
// together) per operation.
func (s side) cpuPerOp() time.Duration {
	if s.ops == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.ops)
}

func (s side) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// runFor calls op from workers goroutines until d has passed (or op says
// stop) and measures each call. Each worker calls it at least once: on a
// loaded machine a goroutine may first run after d, and a rate of no call
// measures nothing.
func runFor(d time.Duration, workers int, op func(worker int) (stop bool, err error)) (side, error) {
	h := &histogram{}
	var (
		ops      atomic.Uint64
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	start, cpu0 := time.Now(), cpuTime()
	deadline := start.Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; first || time.Now().Before(deadline); first = false {
				t0 := time.Now()
				stop, err := op(w)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if stop {
					return
				}
				h.record(time.Since(t0))
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	s := side{ops: ops.Load(), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}
	if err, ok := firstErr.Load().(error); ok {
		return s, err
	}
	return s, nil
}

// result is one row of the table.
type result struct {
	Workload     string  `json:"workload"`
	DirectRate   float64 `json:"direct_ops_per_s"`
	OrdersdRate  float64 `json:"ordersd_ops_per_s"`
	Ratio        float64 `json:"ratio"`
	DirectP50Ms  float64 `json:"direct_p50_ms"`
	DirectP99Ms  float64 `json:"direct_p99_ms"`
	OrdersdP50Ms float64 `json:"ordersd_p50_ms"`
	OrdersdP99Ms float64 `json:"ordersd_p99_ms"`
	DirectCPUUs  float64 `json:"direct_cpu_us_per_op"`
	OrdersdCPUUs float64 `json:"ordersd_cpu_us_per_op"`
	Target       string  `json:"target"`
	Met          bool    `json:"met"`
	// HeapBytesPerOrder is the heap workload's figure: Go heap per stored order after a restart.
	HeapBytesPerOrder float64 `json:"heap_bytes_per_order,omitempty"`
	Note              string  `json:"note,omitempty"`
	// Partitions is the layout the row ran on: ordersd's --partitions (0: layout 2).
	Partitions int `json:"partitions"`
	// Nodes are the cluster workload's figures of each ordersd process.
	Nodes []nodeFigures `json:"nodes,omitempty"`
}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000 }

// compare makes a row from a direct and an ordersd run; the target is met
// when the ratio is at least minRatio.
func compare(name string, direct, ordersd side, minRatio float64) result {
	r := result{
		Workload:     name,
		DirectRate:   math.Round(direct.rate()),
		OrdersdRate:  math.Round(ordersd.rate()),
		DirectP50Ms:  ms(direct.lat.quantile(0.5)),
		DirectP99Ms:  ms(direct.lat.quantile(0.99)),
		OrdersdP50Ms: ms(ordersd.lat.quantile(0.5)),
		OrdersdP99Ms: ms(ordersd.lat.quantile(0.99)),
		DirectCPUUs:  us(direct.cpuPerOp()),
		OrdersdCPUUs: us(ordersd.cpuPerOp()),
	}
	if direct.rate() > 0 {
		r.Ratio = math.Round(ordersd.rate()/direct.rate()*100) / 100
	}
	if minRatio > 0 {
		r.Target = "≥ " + trimFloat(minRatio) + "×"
		r.Met = r.Ratio >= minRatio
	}
	return r
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// cpuTime is the CPU time the process has used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
