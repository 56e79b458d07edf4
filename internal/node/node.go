// Package node assembles and runs one ordersd node: the embedded NATS
// server (or a connection to an existing deployment), the event store, the
// gRPC server with its services (and, optionally, the HTTP port, the xDS
// server and load reports), the watch monitor and the review worker, and
// their orderly shutdown. The ordersd command (internal/cli) runs it from
// flags; benchmarks and tests run the very same code in process.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/reload"
	"github.com/ordersd/ordersd/internal/telemetry"
	"github.com/ordersd/ordersd/internal/tlsfiles"
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
	// HTTPAddr is the address of Connect, gRPC-Web and gRPC over HTTP (nil when off).
	HTTPAddr net.Addr
	// ConnectNATS opens another connection to the node's NATS (in process
	// for the embedded server), for clients that talk to JetStream directly.
	ConnectNATS func(opts ...nats.Option) (*nats.Conn, error)
}

// Run starts a node and blocks until ctx is cancelled, then shuts down in
// order: health goes NOT_SERVING and the node serves on for
// cfg.ShutdownDelay, then streams and the review worker end
// (releasing what they hold), the HTTP port and then the gRPC server stop
// taking calls and let those in flight finish (cut off after
// cfg.ShutdownTimeout), the NATS
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
	lis, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lis.close() // the servers close them too; this is for early returns

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
	// The HTTP port serves the gRPC port's certificate, from files of its
	// own that the watcher reloads too.
	var httpTLS *tlsfiles.Files
	if lis.http != nil && cfg.TLS.CertFile != "" {
		if httpTLS, err = tlsfiles.Load("HTTP server", cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile); err != nil {
			return err
		}
		reloadItems = append(reloadItems, tlsItem(httpTLS))
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
		WorkQueues:   consumers.WorkQueueOptions{InactiveThreshold: cfg.ConsumerInactiveThreshold, MaxDurables: cfg.MaxDurableConsumers},
		Metrics:      m,
		XDS:          cfg.XDS,
		LoadReport:   cfg.LoadReport,
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
	if lis.ops != nil {
		ops = newOpsServer(lis.ops, reg, svc.Health)
	}
	var httpSrv *httpServer
	if lis.http != nil {
		gs, ok := svc.GRPC.(*grpc.Server)
		if !ok { // Validate refuses --http-addr with --xds
			return errors.New("the HTTP port needs the plain gRPC server, not the xDS one")
		}
		if httpSrv, err = newHTTPServer(lis.http, gs, cfg, httpTLS, log); err != nil {
			return err
		}
		svc.http = httpSrv
	}
	log.Info("ordersd serving gRPC", "addr", lis.grpc.Addr().String(), "nats", natsMode(cfg), "tls", cfg.TLS.CertFile != "", "mutual_tls", cfg.TLS.ClientCAFile != "", "xds", cfg.XDS)
	if cfg.OnReady != nil {
		ready := Ready{GRPCAddr: lis.grpc.Addr(), ConnectNATS: conn.connectAnother}
		if lis.ops != nil {
			ready.MetricsAddr = lis.ops.Addr()
		}
		if lis.http != nil {
			ready.HTTPAddr = lis.http.Addr()
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
	if httpSrv != nil {
		g.Go(func() error { return httpSrv.serve(log) })
	}
	if cfg.Review {
		g.Go(func() error {
			reviewer.Run(svc.Stopping)
			return nil
		})
	}
	g.Go(func() error {
		if err := svc.GRPC.Serve(lis.grpc); err != nil {
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

// listeners are the node's bound ports; ops and http are nil when off.
type listeners struct {
	grpc, ops, http net.Listener
}

// listen binds the gRPC listener and, unless they are off, the metrics
// and HTTP ones: a taken address fails the node before it touches any
// data.
func listen(cfg Config) (*listeners, error) {
	l := &listeners{}
	for _, port := range []struct {
		addr, flag string
		optional   bool // off when addr is empty
		lis        *net.Listener
	}{
		{cfg.GRPCAddr, "--grpc-addr", false, &l.grpc},
		{cfg.MetricsAddr, "--metrics-addr", true, &l.ops},
		{cfg.HTTPAddr, "--http-addr", true, &l.http},
	} {
		if port.addr == "" && port.optional {
			continue
		}
		lis, err := listenTCP("tcp", port.addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("listen on %s (%s): %w", port.addr, port.flag, err)
		}
		*port.lis = lis
	}
	return l, nil
}

// close closes the listeners that are bound.
func (l *listeners) close() {
	for _, lis := range []net.Listener{l.grpc, l.ops, l.http} {
		if lis != nil {
			_ = lis.Close()
		}
	}
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
