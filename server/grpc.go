package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/api"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
)

// GRPCOptions are the optional parts of the gRPC server.
type GRPCOptions struct {
	// Auth authenticates and authorizes calls; nil: authentication off.
	Auth *auth.Authenticator
	// PublicServices are served without a token (auth.DefaultPublicServices).
	PublicServices []string
	// RateLimit bounds each caller's calls; nil: no limit.
	RateLimit ratelimit.Limiter
	// Metrics records the gRPC server metrics; nil: none.
	Metrics *grpcprom.ServerMetrics
	// ServerOptions are passed to grpc.NewServer (TLS, limits, ...).
	ServerOptions []grpc.ServerOption
	// Stopping ends the health service's Watch streams when it is done;
	// nil: they end only with their clients.
	Stopping context.Context
	// Queues is the QueueService (consumer administration, dead letters);
	// nil: not served.
	Queues ordersv1.QueueServiceServer
	// NewServer builds the server from the options above; nil:
	// grpc.NewServer. The node passes grpc-go's xDS server here (--xds).
	NewServer func(opts ...grpc.ServerOption) (GRPCServer, error)
	// Register, when set, registers further services (the ORCA load
	// reports) beside the OrderService, health and reflection.
	Register func(grpc.ServiceRegistrar)
}

// GRPCServer is what a node needs of its gRPC server: *grpc.Server or
// grpc-go's xDS-enabled *xds.GRPCServer, which serves only once a control
// plane has configured its listener.
type GRPCServer interface {
	grpc.ServiceRegistrar
	// GetServiceInfo lists the registered services (reflection, metrics).
	GetServiceInfo() map[string]grpc.ServiceInfo
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// NewGRPCServer assembles the gRPC server: the OrderService (and the
// QueueService when given), the standard
// health service (hs; see WatchHealth) and server reflection, behind
// interceptors, outermost first: metrics, logging (one line per finished call, with
// its code, duration and caller), recovery (a panic becomes INTERNAL and a
// logged stack, never a crashed process), authentication, rate limiting.
// With an xDS server, the filters the control plane configures (RBAC) run
// before these interceptors: a call must pass both.
func NewGRPCServer(svc ordersv1.OrderServiceServer, hs *health.Server, log *slog.Logger, o GRPCOptions) (GRPCServer, error) {
	callLog := newCallLogger(log)
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})}
	var (
		unary  []grpc.UnaryServerInterceptor
		stream []grpc.StreamServerInterceptor
	)
	if o.Metrics != nil {
		unary, stream = append(unary, o.Metrics.UnaryServerInterceptor()), append(stream, o.Metrics.StreamServerInterceptor())
	}
	unary = append(unary, callLog.unary, recovery.UnaryServerInterceptor(recoverOpts...))
	stream = append(stream, callLog.stream, recovery.StreamServerInterceptor(recoverOpts...))
	if o.Auth != nil {
		u, s := o.Auth.Interceptors(o.PublicServices)
		unary, stream = append(unary, u), append(stream, s)
	}
	if o.RateLimit != nil {
		unary = append(unary, ratelimit.UnaryServerInterceptor(o.RateLimit))
		stream = append(stream, ratelimit.StreamServerInterceptor(o.RateLimit))
	}
	unary = append(unary, logOrderID)
	opts := append([]grpc.ServerOption{
		// Serve calls from a pool of goroutines instead of a new one each.
		grpc.NumStreamWorkers(uint32(runtime.NumCPU())),
		codecOption(),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, o.ServerOptions...)
	newServer := o.NewServer
	if newServer == nil {
		newServer = func(opts ...grpc.ServerOption) (GRPCServer, error) { return grpc.NewServer(opts...), nil }
	}
	gs, err := newServer(opts...)
	if err != nil {
		return nil, err
	}
	ordersv1.RegisterOrderServiceServer(gs, svc)
	if o.Queues != nil {
		ordersv1.RegisterQueueServiceServer(gs, o.Queues)
	}
	healthpb.RegisterHealthServer(gs, endingWatches(hs, o.Stopping))
	if o.Register != nil {
		o.Register(gs)
	}
	registerReflection(gs, log)
	return gs, nil
}

// orderIDField is the log field of a unary request's order id.
const orderIDField = "order_id"

// logOrderID adds the order id of a unary request to the call's log line.
func logOrderID(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if r, ok := req.(interface{ GetOrderId() string }); ok && r.GetOrderId() != "" {
		logging.AddFields(ctx, logging.Fields{orderIDField, r.GetOrderId()})
	}
	return handler(ctx, req)
}

// registerReflection serves gRPC reflection (v1 and v1alpha, which older
// grpcurl builds use) from the documented descriptors of package api, so
// `grpcurl describe` shows the comments of proto/.
func registerReflection(gs GRPCServer, log *slog.Logger) {
	opts := reflection.ServerOptions{Services: gs}
	if resolver, err := api.NewResolver(); err == nil {
		opts.DescriptorResolver = resolver
	} else {
		log.Warn("reflection falls back to descriptors without comments", "err", err)
	}
	reflectionv1.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
}
