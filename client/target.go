package client

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// The environment variables of the standard xDS bootstrap, as grpc-go reads
// them: a file's path, or its content.
const (
	xdsBootstrapFileEnv   = "GRPC_XDS_BOOTSTRAP"
	xdsBootstrapConfigEnv = "GRPC_XDS_BOOTSTRAP_CONFIG"
)

// xdsScheme is the scheme of the xDS resolver, registered by importing
// google.golang.org/grpc/xds (which package client/xds does).
const xdsScheme = "xds"

// staticScheme names the resolver of a static list of addresses; it is
// given to one ClientConn only, never registered globally.
const staticScheme = "ordersd-static"

// ErrXDSNotLinked is returned by Dial when an xDS bootstrap is present and
// the target has no scheme, but the xDS resolver is not linked in.
var ErrXDSNotLinked = errors.New(`an xDS bootstrap is present (GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG) but xDS is not linked in: import _ "github.com/ordersd/ordersd/client/xds", or dial "dns:///<host:port>" to bypass the mesh`)

// resolved is how a target is reached: a gRPC target string, and the
// resolver of a static list when the target is one.
type resolved struct {
	target string
	static *manual.Resolver
}

// resolveTarget turns a user's target into a gRPC one (see the package
// documentation): a URI with a registered scheme as it is; a comma-separated
// list as a static list; otherwise one name, through xDS when a bootstrap
// is present, else DNS.
func resolveTarget(target string, getenv func(string) string, registered func(scheme string) bool) (resolved, error) {
	target = strings.TrimSpace(target)
	if target == "" {
		return resolved{}, fmt.Errorf("%w: empty target", ErrInvalidOption)
	}
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && registered(u.Scheme) {
		return resolved{target: target}, nil
	}
	if strings.Contains(target, ",") {
		var endpoints []resolver.Endpoint
		for addr := range strings.SplitSeq(target, ",") {
			addr = strings.TrimSpace(addr)
			if addr == "" {
				return resolved{}, fmt.Errorf("%w: empty address in the list %q", ErrInvalidOption, target)
			}
			endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}})
		}
		r := manual.NewBuilderWithScheme(staticScheme)
		r.InitialState(resolver.State{Endpoints: endpoints})
		return resolved{target: staticScheme + ":///", static: r}, nil
	}
	if getenv(xdsBootstrapFileEnv) != "" || getenv(xdsBootstrapConfigEnv) != "" {
		if !registered(xdsScheme) {
			return resolved{}, ErrXDSNotLinked
		}
		return resolved{target: xdsScheme + ":///" + target}, nil
	}
	return resolved{target: "dns:///" + target}, nil
}

// schemeRegistered reports whether gRPC has a resolver for scheme.
func schemeRegistered(scheme string) bool { return resolver.Get(scheme) != nil }
