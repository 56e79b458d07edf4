package node

import (
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/internal/auth"
	ordersserver "github.com/ordersd/ordersd/server"
)

// grpcOptions gathers the gRPC server's optional parts from the config:
// limits, tracing, metrics (registered with reg), TLS, authentication and
// rate limits.
func grpcOptions(cfg Config, reg prometheus.Registerer, log *slog.Logger) (ordersserver.GRPCOptions, error) {
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
	creds, err := serverCredentials(cfg.TLS, cfg.GRPCAddr, log)
	if err != nil {
		return o, err
	}
	if creds != nil {
		o.ServerOptions = append(o.ServerOptions, grpc.Creds(creds))
	}
	if o.Auth, err = auth.New(cfg.Auth); err != nil {
		return o, err
	}
	if o.Auth == nil {
		log.Warn("authentication is off: every caller may call every RPC; see --auth-tokens-file and --auth-jwt-*")
	}
	if cfg.Limits.RatePerSecond > 0 {
		o.RateLimit = auth.NewRateLimiter(cfg.Limits.RatePerSecond, cfg.Limits.RateBurst)
	}
	return o, nil
}
