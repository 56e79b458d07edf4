// Package node assembles and runs one ordersd node: the embedded NATS
// server (or a connection to an existing deployment), the event store, the
// gRPC server with its services, the watch monitor and the review worker,
// and their orderly shutdown. cmd/ordersd runs it from flags; benchmarks
// and tests run the very same code in process.
package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/telemetry"
	ordersserver "github.com/ordersd/ordersd/server"
)

// healthInterval is how often the health service re-checks JetStream
// between connection events.
const healthInterval = 2 * time.Second

// Config is everything a node needs; cmd/ordersd fills it from flags.
type Config struct {
	GRPCAddr        string                     // where the gRPC server listens
	MetricsAddr     string                     // where /metrics, /livez and /readyz are served; off when empty
	DataDir         string                     // JetStream data of the embedded server
	NATSURL         string                     // an existing deployment; the embedded server when empty
	NATSAuth        NATSAuth                   // credentials and TLS for NATSURL
	EmbeddedListen  EmbeddedListen             // opens the embedded server to NATS clients
	ServerName      string                     // the embedded server's name; unique in a cluster
	Cluster         eventstore.EmbeddedCluster // joins embedded servers into one JetStream cluster
	SyncInterval    time.Duration              // how often the embedded server fsyncs (0: nats-server's default)
	SyncAlways      bool                       // fsync every message before acknowledging it
	Replicas        int                        // copies of the stream ORDERS
	DuplicateWindow time.Duration              // how long JetStream remembers Nats-Msg-Ids
	OpTimeout       time.Duration              // longest wait for one JetStream operation
	ShutdownTimeout time.Duration              // how long shutdown waits for calls in flight
	AckTokenKeyFile string                     // the key signing ack tokens; random when empty
	TLS             TLSConfig                  // the gRPC server's TLS; plaintext when empty
	Limits          Limits                     // bounds on what clients can make the node hold
	Auth            auth.Config                // who may call what; off when empty
	PublicServices  []string                   // gRPC services open without a token
	Review          bool                       // run the order-review worker
	ReviewLimit     int64                      // largest total_minor the review approves

	// OnReady, when set, is called once the node serves gRPC.
	OnReady func(Ready)
	// Version names the build in traces.
	Version string
}

// Ready describes a node that serves.
type Ready struct {
	// GRPCAddr is the address the gRPC server listens on.
	GRPCAddr net.Addr
	// MetricsAddr is the address of /metrics, /livez and /readyz (nil when off).
	MetricsAddr net.Addr
	// ConnectNATS opens another connection to the node's NATS (in process
	// for the embedded server), for clients that talk to JetStream directly.
	ConnectNATS func(opts ...nats.Option) (*nats.Conn, error)
}

// Run starts a node and blocks until ctx is cancelled, then shuts down in
// order: health goes NOT_SERVING, streams and the review worker end
// (releasing what they hold), the gRPC server stops taking calls and lets
// those in flight finish (cut off after cfg.ShutdownTimeout), the NATS
// connection drains, and the embedded NATS server stops.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	stopTracing, err := telemetry.Setup(ctx, cfg.Version)
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.Warn("trace export did not flush", "err", err)
		}
	}()
	if telemetry.ExportConfigured() {
		log.Info("tracing on: exporting spans over OTLP (OTEL_* environment)")
	}
	conn, err := connectNATS(cfg, log)
	if err != nil {
		return err
	}
	defer conn.close(cfg.ShutdownTimeout, log)
	nc := conn.nc
	// An async publish whose ack never comes (a leader died mid-write) must
	// not hold one of the in-flight slots forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.OpTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	store := eventstore.New(js, eventstore.Options{
		Stream:    eventstore.StreamOptions{Replicas: cfg.Replicas, DuplicateWindow: cfg.DuplicateWindow},
		OpTimeout: cfg.OpTimeout,
		Logger:    log,
		Metrics:   m,
	})
	if err := store.Ready(ctx); err != nil {
		// Not fatal: the health watcher keeps trying, and reports
		// NOT_SERVING until the stream is there.
		log.Warn("JetStream not ready yet; serving NOT_SERVING until it is", "err", err)
	}

	tokens, err := ackTokens(cfg.AckTokenKeyFile, log)
	if err != nil {
		return err
	}
	reviewer, err := consumers.NewReviewer(store, consumers.ReviewOptions{LimitMinor: cfg.ReviewLimit}, log)
	if err != nil {
		return err
	}
	monitor := consumers.NewMonitor(nc, log, m)
	defer monitor.Close()
	stopping, beginShutdown := context.WithCancel(context.Background())
	defer beginShutdown()
	svc := ordersserver.NewOrderService(ordersserver.Deps{
		Store:        store,
		WorkQueues:   consumers.NewWorkQueues(store, nc, tokens, log, m),
		Tokens:       tokens,
		Acker:        consumers.NewAcker(nc, cfg.OpTimeout),
		Watcher:      consumers.NewWatcher(monitor, store),
		Stopping:     stopping,
		MaxWatchers:  cfg.Limits.MaxWatchers,
		MaxConsumers: cfg.Limits.MaxConsumers,
	}, log)
	grpcOpts, grpcMetrics, err := grpcOptions(cfg, reg, log)
	if err != nil {
		return err
	}
	hs := ordersserver.NewHealthServer()
	gs := ordersserver.NewGRPCServer(svc, hs, log, grpcOpts)
	grpcMetrics.InitializeMetrics(gs)
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.GRPCAddr, err)
	}
	var ops *opsServer
	if cfg.MetricsAddr != "" {
		if ops, err = newOpsServer(cfg.MetricsAddr, reg, hs); err != nil {
			lis.Close()
			return fmt.Errorf("listen on %s (metrics): %w", cfg.MetricsAddr, err)
		}
	}
	log.Info("ordersd serving gRPC", "addr", lis.Addr().String(), "nats", natsMode(cfg), "tls", cfg.TLS.CertFile != "", "mutual_tls", cfg.TLS.ClientCAFile != "")
	if cfg.OnReady != nil {
		ready := Ready{GRPCAddr: lis.Addr()}
		if ops != nil {
			ready.MetricsAddr = ops.lis.Addr()
		}
		ready.ConnectNATS = conn.connectAnother
		cfg.OnReady(ready)
	}

	g, gctx := errgroup.WithContext(ctx)
	healthCtx, stopHealth := context.WithCancel(gctx)
	defer stopHealth()
	g.Go(func() error {
		ordersserver.WatchHealth(healthCtx, hs, nc, store.Ready, healthInterval, log, m)
		return nil
	})
	if ops != nil {
		g.Go(func() error { return ops.serve(log) })
	}
	if cfg.Review {
		g.Go(func() error {
			reviewer.Run(stopping)
			return nil
		})
	}
	g.Go(func() error {
		if err := gs.Serve(lis); err != nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		stopHealth()
		beginShutdown() // ends streams and the review worker, releasing what they hold
		stopGRPC(gs, cfg.ShutdownTimeout, log)
		if ops != nil {
			ops.stop(time.Second)
		}
		return nil
	})
	return g.Wait()
}

// stopGRPC stops taking calls and waits for those in flight, then cuts
// off whatever is left after timeout (long streams, slow clients).
func stopGRPC(gs interface {
	GracefulStop()
	Stop()
}, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		log.Warn("calls still running after the shutdown timeout; cutting them off")
		gs.Stop()
		<-done
	}
}

// ackTokens returns the signer of ack tokens, with the key from keyFile or
// a random one.
func ackTokens(keyFile string, log *slog.Logger) (*consumers.AckTokens, error) {
	if keyFile == "" {
		log.Warn("no ack token key file (--ack-token-key-file): ack tokens use a random key, so they work only on this process and not after a restart; give every node the same key file to ack on any of them")
		return consumers.RandomAckTokens(), nil
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ack token key file: %w", err)
	}
	tokens, err := consumers.NewAckTokens(bytes.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("ack token key file %s: %w", keyFile, err)
	}
	return tokens, nil
}

func natsMode(cfg Config) string {
	if cfg.NATSURL == "" {
		return "embedded"
	}
	return "external"
}
