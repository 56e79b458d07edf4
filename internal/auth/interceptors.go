package auth

import (
	"context"
	"slices"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
)

// DefaultPublicServices may be called without a token: health checks,
// reflection and load reports, which load balancers and tools need and
// which reveal nothing of the orders.
var DefaultPublicServices = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
	// ORCA load reports, which clients balancing by load stream from
	// every node; they tell how busy a node is, nothing of the orders.
	"xds.service.orca.v3.OpenRcaService",
}

// Interceptors authenticate and authorize every call, unary and streaming
// alike, except those to the public services.
func (a *Authenticator) Interceptors(public []string) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	guarded := selector.MatchFunc(func(_ context.Context, call interceptors.CallMeta) bool {
		return !slices.Contains(public, call.Service)
	})
	return selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(a.authorize), guarded),
		selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(a.authorize), guarded)
}
