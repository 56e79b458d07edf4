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
	"github.com/ordersd/ordersd/internal/leaders"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/reload"
	"github.com/ordersd/ordersd/internal/telemetry"
	"github.com/ordersd/ordersd/internal/tlsfiles"
	ordersserver "github.com/ordersd/ordersd/server"
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
	stopTracing, err := startTracing(ctx, cfg.Version, log)
	if err != nil {
		return err
	}
	defer stopTracing()
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

	reg, m := newMetrics()
	// What the options start in the background (a JWKS refresh) ends with Run.
	optsCtx, stopOpts := context.WithCancel(ctx)
	defer stopOpts()
	grpcOpts, reloadItems, err := grpcOptions(optsCtx, cfg, reg, log)
	if err != nil {
		return err
	}
	tokens, err := ackTokens(cfg, log)
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
	httpTLS, err := loadHTTPTLS(cfg, lis)
	if err != nil {
		return err
	}
	if httpTLS != nil {
		reloadItems = append(reloadItems, tlsItem(httpTLS))
	}
	reloader, err := reload.New(reloadItems, log)
	if err != nil {
		return err
	}
	defer reloader.Close() // after serve, which has stopped its Run

	svc, err := Assemble(ctx, conn.nc, serviceOptions(cfg, tokens, grpcOpts, m), log)
	if err != nil {
		return err
	}
	// A no-op after serve's shutdown, which comes first in every other way out.
	defer func() { _ = svc.Shutdown(cfg.ShutdownTimeout) }()
	reviewer, err := consumers.NewReviewer(svc.Store, consumers.ReviewOptions{LimitMinor: cfg.ReviewLimit, Concurrency: cfg.ReviewConcurrency}, log)
	if err != nil {
		return fmt.Errorf("--review-limit-minor, --review-concurrency: %w", err)
	}
	rebalancer, err := newRebalancer(cfg, conn, m, log)
	if err != nil {
		return err
	}
	ports, err := newPorts(cfg, lis, reg, svc, httpTLS, log)
	if err != nil {
		return err
	}
	announce(cfg, lis, conn, log)
	return serve(ctx, cfg, parts{svc: svc, ports: ports, reviewer: reviewer, rebalancer: rebalancer, reloader: reloader, grpcLis: lis.grpc}, log)
}

// startTracing sets up OpenTelemetry as the OTEL_* environment says, and
// returns the function that flushes and stops it.
func startTracing(ctx context.Context, version string, log *slog.Logger) (stop func(), err error) {
	stopTracing, err := telemetry.Setup(ctx, version)
	if err != nil {
		return nil, err
	}
	if telemetry.ExportConfigured() {
		log.Info("tracing on: exporting spans as the OTEL_* environment says")
	}
	return func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.Warn("trace export did not flush", "err", err)
		}
	}, nil
}

// newMetrics is the registry that /metrics serves, with the Go runtime's
// and the process's series, and ordersd's own series on it.
func newMetrics() (*prometheus.Registry, *metrics.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, metrics.New(reg)
}

// loadHTTPTLS loads the certificate the HTTP port serves: the gRPC port's,
// from files of its own that the reloader reloads too. Nil when the port
// is off or plaintext.
func loadHTTPTLS(cfg Config, lis *listeners) (*tlsfiles.Files, error) {
	if lis.http == nil || cfg.TLS.CertFile == "" {
		return nil, nil
	}
	return tlsfiles.Load("HTTP server", cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile)
}

// serviceOptions are the settings of the services that cfg configures.
func serviceOptions(cfg Config, tokens *consumers.AckTokens, grpcOpts ordersserver.GRPCOptions, m *metrics.Metrics) ServiceOptions {
	return ServiceOptions{
		Layout:       cfg.Layout(),
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
	}
}

// ports are the servers of the node's other ports; each is nil when off.
type ports struct {
	ops  *opsServer  // /metrics, /livez, /readyz
	http *httpServer // Connect, gRPC-Web and gRPC over HTTP
}

// newPorts makes the servers of the metrics and HTTP ports that are on.
func newPorts(cfg Config, lis *listeners, reg *prometheus.Registry, svc *Service, httpTLS *tlsfiles.Files, log *slog.Logger) (ports, error) {
	var p ports
	if lis.ops != nil {
		p.ops = newOpsServer(lis.ops, reg, svc.Health)
	}
	if lis.http != nil {
		gs, ok := svc.GRPC.(*grpc.Server)
		if !ok { // Validate refuses --http-addr with --xds
			return p, errors.New("the HTTP port needs the plain gRPC server, not the xDS one")
		}
		var err error
		if p.http, err = newHTTPServer(lis.http, gs, cfg, httpTLS, log); err != nil {
			return p, err
		}
		svc.http = p.http
	}
	return p, nil
}

// announce logs that the node serves, and tells cfg.OnReady where.
func announce(cfg Config, lis *listeners, conn *natsConn, log *slog.Logger) {
	log.Info("ordersd serving gRPC", "addr", lis.grpc.Addr().String(), "nats", natsMode(cfg), "tls", cfg.TLS.CertFile != "", "mutual_tls", cfg.TLS.ClientCAFile != "", "xds", cfg.XDS)
	if cfg.OnReady == nil {
		return
	}
	ready := Ready{GRPCAddr: lis.grpc.Addr(), ConnectNATS: conn.connectAnother}
	if lis.ops != nil {
		ready.MetricsAddr = lis.ops.Addr()
	}
	if lis.http != nil {
		ready.HTTPAddr = lis.http.Addr()
	}
	cfg.OnReady(ready)
}

// parts are what serve runs.
type parts struct {
	svc        *Service
	ports      ports
	reviewer   *consumers.Reviewer
	rebalancer *leaders.Rebalancer
	reloader   *reload.Watcher
	grpcLis    net.Listener
}

// serve runs the servers, the reloader, the review worker and the leader
// checks until ctx ends or one of them fails, then shuts the service down
// in order.
func serve(ctx context.Context, cfg Config, p parts, log *slog.Logger) error {
	svc := p.svc
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		p.reloader.Run(gctx, cfg.ReloadRequests)
		return nil
	})
	if p.ports.ops != nil {
		g.Go(func() error { return p.ports.ops.serve(log) })
	}
	if p.ports.http != nil {
		g.Go(func() error { return p.ports.http.serve(log) })
	}
	if cfg.Review {
		g.Go(func() error {
			p.reviewer.Run(svc.Stopping)
			return nil
		})
	}
	g.Go(func() error {
		p.rebalancer.Run(svc.Stopping)
		return nil
	})
	g.Go(func() error {
		if err := svc.GRPC.Serve(p.grpcLis); err != nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		_ = svc.Shutdown(cfg.ShutdownTimeout) // logs when calls are cut off
		if p.ports.ops != nil {
			p.ports.ops.stop(time.Second)
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

// ackTokens returns the signer of ack tokens (and, by keys derived from
// its key, of page tokens and watch resume positions), with the key from
// --ack-token-key-file or, on a single embedded node without one, the key
// kept in its data directory, made on first start: so that what clients
// hold outlives a restart of the node.
func ackTokens(cfg Config, log *slog.Logger) (*consumers.AckTokens, error) {
	keyFile := cfg.AckTokenKeyFile
	if keyFile == "" && cfg.NATSURL == "" {
		var err error
		if keyFile, err = dataDirAckTokenKey(cfg.DataDir); err != nil {
			return nil, err
		}
		log.Info("ack tokens, page tokens and watch positions are signed with the key in the data directory; give every node of a cluster the same --ack-token-key-file", "file", keyFile)
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
