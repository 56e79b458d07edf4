// Package node assembles and runs one ordersd node: the embedded NATS
// server (or a connection to an existing deployment), the event store, the
// gRPC server with its services, the watch monitor and the review worker,
// and their orderly shutdown. cmd/ordersd runs it from flags; benchmarks
// and tests run the very same code in process.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/reload"
	"github.com/ordersd/ordersd/internal/telemetry"
)

// healthInterval is how often the health service re-checks JetStream
// between connection events.
const healthInterval = 2 * time.Second

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
// order: health goes NOT_SERVING and the node serves on for
// cfg.ShutdownDelay, then streams and the review worker end
// (releasing what they hold), the gRPC server stops taking calls and lets
// those in flight finish (cut off after cfg.ShutdownTimeout), the NATS
// connection drains, and the embedded NATS server stops.
//
// Run fails before it opens any store when cfg is invalid, when another
// process holds cfg.DataDir (ErrDataDirLocked), or when a listener's
// address is taken: the data directory is locked and every listener bound
// before the embedded NATS server starts.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
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
		log.Info("tracing on: exporting spans as the OTEL_* environment says")
	}
	if cfg.NATSURL == "" {
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.release() // last, once the embedded server has stopped
	}
	lis, opsLis, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lis.Close() // the gRPC server closes it too; this is for early returns
	if opsLis != nil {
		defer opsLis.Close()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	// What the options start in the background (a JWKS refresh) ends with Run.
	optsCtx, stopOpts := context.WithCancel(ctx)
	defer stopOpts()
	grpcOpts, reloadItems, err := grpcOptions(optsCtx, cfg, reg, log)
	if err != nil {
		return err
	}
	tokens, err := ackTokens(cfg.AckTokenKeyFile, log)
	if err != nil {
		return err
	}

	conn, err := connectNATS(cfg, log)
	if err != nil {
		return err
	}
	defer conn.close(cfg.ShutdownTimeout, log)
	for _, f := range conn.tls {
		reloadItems = append(reloadItems, tlsItem(f))
	}
	reloader, err := reload.New(reloadItems, log)
	if err != nil {
		return err
	}
	defer reloader.Close() // after the errgroup below, whose Run has returned
	svc, err := Assemble(ctx, conn.nc, ServiceOptions{
		Stream:       eventstore.StreamOptions{Replicas: cfg.Replicas, DuplicateWindow: cfg.DuplicateWindow},
		OpTimeout:    cfg.OpTimeout,
		DrainDelay:   cfg.ShutdownDelay,
		Tokens:       tokens,
		GRPC:         grpcOpts,
		MaxWatchers:  cfg.Limits.MaxWatchers,
		MaxConsumers: cfg.Limits.MaxConsumers,
		Metrics:      m,
	}, log)
	if err != nil {
		return err
	}
	// A no-op after the shutdown below, which comes first in every other way out.
	defer func() { _ = svc.Shutdown(cfg.ShutdownTimeout) }()
	reviewer, err := consumers.NewReviewer(svc.Store, consumers.ReviewOptions{LimitMinor: cfg.ReviewLimit, Concurrency: cfg.ReviewConcurrency}, log)
	if err != nil {
		return fmt.Errorf("--review-limit-minor, --review-concurrency: %w", err)
	}
	var ops *opsServer
	if opsLis != nil {
		ops = newOpsServer(opsLis, reg, svc.Health)
	}
	log.Info("ordersd serving gRPC", "addr", lis.Addr().String(), "nats", natsMode(cfg), "tls", cfg.TLS.CertFile != "", "mutual_tls", cfg.TLS.ClientCAFile != "")
	if cfg.OnReady != nil {
		ready := Ready{GRPCAddr: lis.Addr(), ConnectNATS: conn.connectAnother}
		if opsLis != nil {
			ready.MetricsAddr = opsLis.Addr()
		}
		cfg.OnReady(ready)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		reloader.Run(gctx, cfg.ReloadRequests)
		return nil
	})
	if ops != nil {
		g.Go(func() error { return ops.serve(log) })
	}
	if cfg.Review {
		g.Go(func() error {
			reviewer.Run(svc.Stopping)
			return nil
		})
	}
	g.Go(func() error {
		if err := svc.GRPC.Serve(lis); err != nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		_ = svc.Shutdown(cfg.ShutdownTimeout) // logs when calls are cut off
		if ops != nil {
			ops.stop(time.Second)
		}
		return nil
	})
	return g.Wait()
}

// listenTCP binds a listener; tests wrap it to watch the listeners close.
var listenTCP = net.Listen

// listen binds the gRPC listener and, unless it is off, the metrics one:
// a taken address fails the node before it touches any data.
func listen(cfg Config) (grpcLis, opsLis net.Listener, err error) {
	grpcLis, err = listenTCP("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (--grpc-addr): %w", cfg.GRPCAddr, err)
	}
	if cfg.MetricsAddr == "" {
		return grpcLis, nil, nil
	}
	if opsLis, err = listenTCP("tcp", cfg.MetricsAddr); err != nil {
		grpcLis.Close()
		return nil, nil, fmt.Errorf("listen on %s (--metrics-addr): %w", cfg.MetricsAddr, err)
	}
	return grpcLis, opsLis, nil
}

// ackTokens returns the signer of ack tokens, with the key from keyFile or
// a random one.
func ackTokens(keyFile string, log *slog.Logger) (*consumers.AckTokens, error) {
	if keyFile == "" {
		log.Warn("no ack token key file (--ack-token-key-file): ack tokens use a random key, so they work only on this process and not after a restart; give every node the same key file to ack on any of them")
		return consumers.RandomAckTokens(), nil
	}
	key, err := readAckTokenKey(keyFile)
	if err != nil {
		return nil, err
	}
	tokens, err := consumers.NewAckTokens(key)
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
