package node

import (
	"context"
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/reload"
	"github.com/ordersd/ordersd/internal/tlsfiles"
	ordersserver "github.com/ordersd/ordersd/server"
)

// grpcOptions gathers the gRPC server's optional parts from the config:
// limits, tracing, metrics (registered with reg), TLS (which an xDS control
// plane may override, with --xds), authentication and rate limits; and the
// reload items of the files they read.
func grpcOptions(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (ordersserver.GRPCOptions, []reload.Item, error) {
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	o := ordersserver.GRPCOptions{
		ServerOptions: append(cfg.Limits.serverOptions(),
			// Spans for every call, continuing the W3C trace context of the
			// caller; no span event per message (otelgrpc's default; its
			// WithMessageEvents would add them), so a long stream's span
			// does not grow with its messages.
			grpc.StatsHandler(otelgrpc.NewServerHandler())),
		PublicServices: cfg.PublicServices,
		Metrics:        grpcMetrics,
	}
	var items []reload.Item
	creds, files, err := serverCredentials(cfg.TLS, cfg.GRPCAddr, log)
	if err != nil {
		return o, nil, err
	}
	if cfg.XDS {
		if creds, err = xdsServerCredentials(creds); err != nil {
			return o, nil, err
		}
	}
	if creds != nil {
		o.ServerOptions = append(o.ServerOptions, grpc.Creds(creds))
	}
	if files != nil {
		items = append(items, tlsItem(files))
	}
	if o.Auth, err = auth.New(ctx, cfg.Auth, log); err != nil {
		return o, nil, err
	}
	if o.Auth == nil {
		log.Warn("authentication is off: every caller may call every RPC; see --auth-tokens-file and --auth-jwt-*")
	} else if files := o.Auth.Files(); len(files) > 0 {
		items = append(items, reload.Item{Name: "tokens file and JWT keys", Files: files, Reload: o.Auth.Reload})
	}
	if cfg.Limits.RatePerSecond > 0 {
		o.RateLimit = auth.NewRateLimiter(cfg.Limits.RatePerSecond, cfg.Limits.RateBurst)
	}
	return o, items, nil
}

// tlsItem makes TLS files an item of the reload watcher.
func tlsItem(f *tlsfiles.Files) reload.Item {
	return reload.Item{Name: f.Name() + " TLS", Files: f.Paths(), Reload: f.Reload}
}
