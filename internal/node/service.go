package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v3orcaservicegrpc "github.com/cncf/xds/go/xds/service/orca/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	ordersserver "github.com/ordersd/ordersd/server"
)

// ServiceOptions configure the serving parts that Assemble puts together.
type ServiceOptions struct {
	// Layout lays the orders out over streams: layout 2 when zero.
	Layout eventstore.Layout
	// Stream sets the streams of the orders (eventstore's defaults for zero fields).
	Stream eventstore.StreamOptions
	// OpTimeout bounds each JetStream operation, async publish acks
	// included; eventstore.DefaultOpTimeout when zero.
	OpTimeout time.Duration
	// Tokens sign and verify ack tokens; required.
	Tokens *consumers.AckTokens
	// GRPC are the gRPC server's options (TLS, limits, authentication).
	GRPC ordersserver.GRPCOptions
	// MaxWatchers and MaxConsumers bound the WatchOrders and ConsumeOrders
	// streams served at once; 0 means no limit.
	MaxWatchers, MaxConsumers int
	// WorkQueues bound the durable consumers ConsumeOrders creates (their
	// inactivity threshold, how many may exist).
	WorkQueues consumers.WorkQueueOptions
	// DrainDelay is how long Shutdown keeps serving after health turned
	// NOT_SERVING, so that load balancers and health-checking clients
	// move calls elsewhere before the listener closes; none when zero.
	DrainDelay time.Duration
	// HealthInterval is how often health re-checks JetStream between
	// connection events; 2s when zero.
	HealthInterval time.Duration
	// Metrics counts the node's work; none when nil.
	Metrics *metrics.Metrics
	// Tune, when set, may change the OrderService's dependencies before it
	// is built (tests put faults or small limits in).
	Tune func(*ordersserver.Deps)
	// XDS serves through grpc-go's xDS-enabled server, configured by the
	// control plane that the bootstrap names; health is NOT_SERVING until
	// the listener's configuration has arrived. The credentials in GRPC
	// should then be xDS credentials (see xdsServerCredentials).
	XDS bool
	// LoadReport sets the ORCA load reports; zero fields take
	// DefaultLoadReportOptions.
	LoadReport LoadReportOptions
}

// Service is one node's serving parts on a NATS connection: the event
// store, the watch monitor, the OrderService on a gRPC server and the
// health service that follows JetStream. It does not listen: serve GRPC on
// a listener, and call Shutdown when done.
type Service struct {
	GRPC    ordersserver.GRPCServer
	Health  *health.Server
	Store   *eventstore.Store
	Monitor *consumers.Monitor
	// Stopping is done once Shutdown begins: long-lived streams and the
	// review worker end then, releasing what they hold.
	Stopping context.Context

	// http, when set, is the HTTP port on GRPC; Shutdown drains it before
	// it stops GRPC, because grpc-go's GracefulStop cuts calls that came
	// through ServeHTTP at once instead of letting them finish.
	http *httpServer

	log           *slog.Logger
	drainDelay    time.Duration
	beginShutdown context.CancelFunc
	stopHealth    context.CancelFunc
	healthDone    chan struct{}
	shutdownOnce  sync.Once
	shutdownErr   error
}

// Assemble builds a Service on nc and starts its health watch. The stream
// ORDERS is provisioned at once when JetStream answers within ctx; when
// it does not, the service still starts and reports NOT_SERVING until it
// does. A stream in an older subject layout fails it
// (eventstore.ErrLayoutOutdated, naming `ordersd migrate`).
func Assemble(ctx context.Context, nc *nats.Conn, o ServiceOptions, log *slog.Logger) (*Service, error) {
	if o.Tokens == nil {
		return nil, fmt.Errorf("%w: no ack tokens", ErrInvalidConfig)
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = eventstore.DefaultOpTimeout
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = healthInterval
	}
	// No WithPublishAsyncTimeout: it starts a timer per publish; the store
	// frees the slots of acks that never come on its own (eventstore.lostAcks).
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	store, err := eventstore.New(js, eventstore.Options{Layout: o.Layout, Stream: o.Stream, OpTimeout: o.OpTimeout, Logger: log, Metrics: o.Metrics})
	if err != nil {
		return nil, err
	}
	letters, err := deadletters.New(store, js, deadletters.Options{Stream: o.Stream, OpTimeout: o.OpTimeout, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := store.Ready(ctx); errors.Is(err, eventstore.ErrLayoutOutdated) {
		// Waiting cannot help: the stream must be migrated first.
		return nil, err
	} else if err != nil {
		// Not fatal: the health watch keeps trying, and reports
		// NOT_SERVING until the stream is there.
		log.Warn("JetStream not ready yet; serving NOT_SERVING until it is", "err", err)
	}
	monitor := consumers.NewMonitor(nc, o.Layout, o.OpTimeout, log, o.Metrics)
	monitor.ReportUnreadableTo(store.Unreadables())
	stopping, beginShutdown := context.WithCancel(context.Background())
	deps := ordersserver.Deps{
		Store:        store,
		WorkQueues:   consumers.NewWorkQueues(store, letters, nc, o.Tokens, log, o.Metrics, o.WorkQueues),
		Tokens:       o.Tokens,
		Acker:        consumers.NewAcker(nc, o.OpTimeout),
		Watcher:      consumers.NewWatcher(monitor, store, consumers.NewResumePositions(o.Tokens)),
		PageTokens:   ordersserver.NewPageTokens(o.Tokens.DeriveKey("ordersd ListOrders page tokens v1")),
		Stopping:     stopping,
		MaxWatchers:  o.MaxWatchers,
		MaxConsumers: o.MaxConsumers,
	}
	if o.Tune != nil {
		o.Tune(&deps)
	}
	hs := ordersserver.NewHealthServer()
	o.GRPC.Stopping = stopping
	o.GRPC.Queues = ordersserver.NewQueueService(store, letters, log)
	o.Metrics.CountDeadLetters(deadLetterCounts(letters))
	ordersserver.SetDeadLettersHealth(hs, false)
	// Readiness is the stream's; whether dead letters are recorded is told
	// beside it (health, metric), and never makes the node NOT_SERVING.
	storeReady := func(ctx context.Context) error {
		err := store.Ready(ctx)
		recorded := err == nil && letters.Off(ctx) == nil
		ordersserver.SetDeadLettersHealth(hs, recorded)
		o.Metrics.DeadLettersRecorded(recorded)
		return err
	}
	ready, recheck := storeReady, (<-chan struct{})(nil)
	if o.XDS {
		lis := newXDSListener(log)
		o.GRPC.NewServer = lis.newServer
		ready = func(ctx context.Context) error {
			if err := lis.ready(); err != nil {
				return err
			}
			return storeReady(ctx)
		}
		recheck = lis.changed
	}
	load := newLoadReporter(o.LoadReport.withDefaults())
	o.GRPC.ServerOptions = append(o.GRPC.ServerOptions, load.serverOptions()...)
	o.GRPC.Register = func(r grpc.ServiceRegistrar) {
		v3orcaservicegrpc.RegisterOpenRcaServiceServer(r, &orcaService{load: load, stopping: stopping})
	}
	gs, err := ordersserver.NewGRPCServer(ordersserver.NewOrderService(deps, log), hs, log, o.GRPC)
	if err != nil {
		beginShutdown()
		_ = monitor.Close()
		return nil, err
	}
	if o.GRPC.Metrics != nil {
		o.GRPC.Metrics.InitializeMetrics(gs)
	}
	go load.run(stopping)
	healthCtx, stopHealth := context.WithCancel(context.Background())
	s := &Service{GRPC: gs, Health: hs, Store: store, Monitor: monitor, Stopping: stopping,
		log: log, drainDelay: o.DrainDelay, beginShutdown: beginShutdown, stopHealth: stopHealth, healthDone: make(chan struct{})}
	go func() {
		defer close(s.healthDone)
		ordersserver.WatchHealth(healthCtx, hs, nc, ready, recheck, o.HealthInterval, log, o.Metrics)
	}()
	return s, nil
}

// deadLetterCounts reads the stored dead letters per consumer for the
// metrics.
func deadLetterCounts(letters *deadletters.Store) func(context.Context) ([]metrics.DeadLetterCount, error) {
	return func(ctx context.Context) ([]metrics.DeadLetterCount, error) {
		counts, err := letters.Counts(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]metrics.DeadLetterCount, len(counts))
		for i, c := range counts {
			reason := "max_deliveries"
			if c.Reason == deadletters.Terminated {
				reason = "terminated"
			}
			out[i] = metrics.DeadLetterCount{Consumer: c.Consumer, Reason: reason, Count: c.Count}
		}
		return out, nil
	}
}

// ErrShutdownCutOff is returned by Shutdown when calls were still running
// after its timeout and were cut off.
var ErrShutdownCutOff = errors.New("calls still running after the shutdown timeout were cut off")

// Shutdown stops the service in order: health goes NOT_SERVING (for load
// balancers to stop sending calls) and the service keeps serving for the
// drain delay, then streams, health watches and whatever watches Stopping
// end, the HTTP port (if any) and then the gRPC server stop taking calls
// and let those in flight finish, cutting them off once timeout (shared by
// both) has passed, and the monitor unsubscribes. It does not close the
// NATS connection. Later calls return the first one's result.
func (s *Service) Shutdown(timeout time.Duration) error {
	s.shutdownOnce.Do(func() {
		s.stopHealth()
		<-s.healthDone // NOT_SERVING now, before the listener closes
		if s.drainDelay > 0 {
			s.log.Info("health NOT_SERVING; draining before the listener closes", "delay", s.drainDelay)
			time.Sleep(s.drainDelay)
		}
		s.beginShutdown()
		deadline := time.Now().Add(timeout)
		if s.http != nil {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			finished := s.http.shutdown(ctx)
			cancel()
			if !finished {
				s.log.Warn("HTTP calls still running after the shutdown timeout; cutting them off")
				s.shutdownErr = ErrShutdownCutOff
			}
		}
		if !stopGRPC(s.GRPC, max(time.Until(deadline), 0), s.log) {
			s.shutdownErr = ErrShutdownCutOff
		}
		_ = s.Monitor.Close()
	})
	return s.shutdownErr
}

// stopGRPC stops taking calls and waits for those in flight, then cuts
// off whatever is left after timeout (long streams, slow clients). It
// reports whether every call finished in time.
func stopGRPC(gs interface {
	GracefulStop()
	Stop()
}, timeout time.Duration, log *slog.Logger) bool {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		log.Warn("calls still running after the shutdown timeout; cutting them off")
		gs.Stop()
		<-done
		return false
	}
}
