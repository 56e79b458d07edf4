package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/status"
)

// LoadReportOptions set the node's ORCA load reports, which clients
// balancing with weighted_round_robin use to send less to a busy node.
type LoadReportOptions struct {
	// MinInterval is the shortest interval between two reports on one
	// client's stream (--orca-min-interval); a client asking for less gets
	// this. DefaultLoadReportOptions has grpc-go's default, 30s.
	MinInterval time.Duration
	// CallsCapacity is how many unary calls in flight on average count as
	// a fully used node (--orca-calls-capacity): the application
	// utilization reported is the larger of CPU utilization and calls in
	// flight over this.
	CallsCapacity int
}

// DefaultLoadReportOptions are the defaults of --orca-min-interval and
// --orca-calls-capacity.
var DefaultLoadReportOptions = LoadReportOptions{MinInterval: 30 * time.Second, CallsCapacity: 100}

// withDefaults fills zero fields from DefaultLoadReportOptions.
func (o LoadReportOptions) withDefaults() LoadReportOptions {
	if o.MinInterval == 0 {
		o.MinInterval = DefaultLoadReportOptions.MinInterval
	}
	if o.CallsCapacity == 0 {
		o.CallsCapacity = DefaultLoadReportOptions.CallsCapacity
	}
	return o
}

// validate refuses negative settings (zero takes the default).
func (o LoadReportOptions) validate() error {
	switch {
	case o.MinInterval < 0:
		return fmt.Errorf("--orca-min-interval must not be negative, got %s", o.MinInterval)
	case o.CallsCapacity < 0:
		return fmt.Errorf("--orca-calls-capacity must not be negative, got %d", o.CallsCapacity)
	}
	return nil
}

// maxLoadSample bounds the window that rates and utilizations are averaged
// over, so that a long report interval still reports recent load.
const maxLoadSample = 10 * time.Second

// loadReporter measures the node's load for ORCA reports, out of band
// (orcaService) and in each unary call's trailer: the unary calls
// it serves (counted by its interceptor), their errors and how long they
// take, and the process's CPU time. Streams (WatchOrders, ConsumeOrders,
// health watches) are not counted: they last as long as their clients
// want, so their number says little about how busy a node is.
type loadReporter struct {
	opts     LoadReportOptions
	recorder orca.ServerMetricsRecorder

	inFlight atomic.Int64 // unary calls being served
	finished atomic.Int64 // unary calls finished, ever
	failed   atomic.Int64 // of those, failed by the node (see nodeFault)
	busy     atomic.Int64 // nanoseconds spent in finished unary calls, ever
}

func newLoadReporter(opts LoadReportOptions) *loadReporter {
	return &loadReporter{opts: opts, recorder: orca.NewServerMetricsRecorder()}
}

// serverOptions count unary calls and report the load in each one's
// trailer too (ORCA per-call reports, endpoint-load-metrics-bin): for
// clients balancing on those (weighted_round_robin without out-of-band
// reports, Envoy's client_side_weighted_round_robin).
func (l *loadReporter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{orca.CallMetricsServerOption(l.recorder), grpc.ChainUnaryInterceptor(l.interceptor)}
}

// interceptor counts unary calls and the time they take, and has grpc-go
// send the load in the call's trailer (it does for calls whose per-call
// recorder was asked for).
func (l *loadReporter) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	l.inFlight.Add(1)
	began := time.Now()
	res, err := handler(ctx, req)
	orca.CallMetricsRecorderFromContext(ctx)
	l.busy.Add(int64(time.Since(began)))
	if nodeFault(err) {
		l.failed.Add(1)
	}
	l.finished.Add(1)
	l.inFlight.Add(-1)
	return res, err
}

// nodeFault reports whether err is the node's failure rather than the
// caller's: only these count as errors in the reports, which weighted
// balancing holds against a node (a NOT_FOUND is no reason to avoid it).
func nodeFault(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded, codes.DataLoss:
		return true
	}
	return false
}

// sampleEvery is how often run refreshes the reported figures.
func (l *loadReporter) sampleEvery() time.Duration {
	return min(l.opts.MinInterval, maxLoadSample)
}

// run refreshes the recorder every sampleEvery until ctx ends, with the
// averages over the last period: calls per second (QPS), node errors per
// second (EPS), CPU utilization, and the application utilization.
func (l *loadReporter) run(ctx context.Context) {
	tick := time.NewTicker(l.sampleEvery())
	defer tick.Stop()
	last := l.snapshot()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := l.snapshot()
		l.record(last, now)
		last = now
	}
}

// loadSample is a reading of the cumulative counters.
type loadSample struct {
	at               time.Time
	finished, failed int64
	busy             time.Duration
	cpu              time.Duration // the process's CPU time; 0 where unknown
	inFlight         int64
}

func (l *loadReporter) snapshot() loadSample {
	return loadSample{at: time.Now(), finished: l.finished.Load(), failed: l.failed.Load(),
		busy: time.Duration(l.busy.Load()), cpu: processCPUTime(), inFlight: l.inFlight.Load()}
}

// record sets the recorder from two samples. Calls in flight on average
// over the period (by Little's law, rate times time per call) are the
// busy time of the calls that finished in it, plus the calls still
// running at its end, which may be stuck.
func (l *loadReporter) record(from, to loadSample) {
	elapsed := to.at.Sub(from.at).Seconds()
	if elapsed <= 0 {
		return
	}
	l.recorder.SetQPS(float64(to.finished-from.finished) / elapsed)
	l.recorder.SetEPS(float64(to.failed-from.failed) / elapsed)
	cpu := -1.0
	if to.cpu > 0 {
		cpu = (to.cpu - from.cpu).Seconds() / elapsed / float64(cpuCapacity())
		l.recorder.SetCPUUtilization(cpu)
	}
	inFlight := (to.busy-from.busy).Seconds()/elapsed + float64(to.inFlight)
	l.recorder.SetApplicationUtilization(max(cpu, inFlight/float64(l.opts.CallsCapacity)))
}
