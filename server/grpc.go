package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
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
)

// NewGRPCServer assembles the gRPC server: the OrderService, the standard
// health service (hs; see WatchHealth) and server reflection, behind a
// logging interceptor (one line per finished call, with its code and
// duration) and a recovery interceptor (a panic becomes INTERNAL and a
// logged stack, never a crashed process).
func NewGRPCServer(svc ordersv1.OrderServiceServer, hs *health.Server, log *slog.Logger, opts ...grpc.ServerOption) *grpc.Server {
	callLog := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})}
	opts = append([]grpc.ServerOption{
		// Serve calls from a pool of goroutines instead of a new one each.
		grpc.NumStreamWorkers(uint32(runtime.NumCPU())),
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(callLog, logOpts...),
			recovery.UnaryServerInterceptor(recoverOpts...),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(callLog, logOpts...),
			recovery.StreamServerInterceptor(recoverOpts...),
		),
	}, opts...)
	gs := grpc.NewServer(opts...)
	ordersv1.RegisterOrderServiceServer(gs, svc)
	healthpb.RegisterHealthServer(gs, hs)
	registerReflection(gs, log)
	return gs
}

// registerReflection serves gRPC reflection (v1 and v1alpha, which older
// grpcurl builds use) from the documented descriptors of package api, so
// `grpcurl describe` shows the comments of proto/.
func registerReflection(gs *grpc.Server, log *slog.Logger) {
	opts := reflection.ServerOptions{Services: gs}
	if resolver, err := api.NewResolver(); err == nil {
		opts.DescriptorResolver = resolver
	} else {
		log.Warn("reflection falls back to descriptors without comments", "err", err)
	}
	reflectionv1.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
}
