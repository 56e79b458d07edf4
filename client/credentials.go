package client

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bearerToken sends a bearer token with each call (grpc
// credentials.PerRPCCredentials).
type bearerToken struct {
	source func(context.Context) (string, error)
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearerToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, err := b.source(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "bearer token: %v", err)
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials:
// tokens never go in plaintext.
func (bearerToken) RequireTransportSecurity() bool { return true }
