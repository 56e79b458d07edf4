// Package xds links grpc-go's xDS support into ordersd's client, for a
// proxyless gRPC service mesh. Import it for its effect:
//
//	import _ "github.com/ordersd/ordersd/client/xds"
//
// and client.Dial resolves a target without a scheme through xds:///
// whenever an xDS bootstrap is present (GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG): the control plane then decides which nodes
// serve, how calls spread over them and how they are retried. It is a
// package of its own because xDS links Envoy's API and a control-plane
// client into every binary that imports it; a client outside a mesh does
// not pay for it.
package xds

import (
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	// Registers the xds:/// resolver and the xDS balancers.
	_ "google.golang.org/grpc/xds"

	"github.com/ordersd/ordersd/client"
)

// Credentials is the client option that takes transport security from the
// mesh: mutual TLS with the certificates the control plane names, when it
// names any, and fallback otherwise (plaintext when fallback is nil).
func Credentials(fallback credentials.TransportCredentials) (client.Option, error) {
	if fallback == nil {
		fallback = insecure.NewCredentials()
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: fallback})
	if err != nil {
		return nil, fmt.Errorf("xDS credentials: %w", err)
	}
	return client.WithTransportCredentials(creds), nil
}
