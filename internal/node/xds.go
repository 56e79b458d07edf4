package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

	ordersserver "github.com/ordersd/ordersd/server"
)

// errListenerNotConfigured is the health state of an xDS node whose
// listener the control plane has not (or no longer) configured.
var errListenerNotConfigured = errors.New("xDS: the control plane has not configured the listener")

// xdsListener follows the serving mode grpc-go's xDS server reports for
// the node's listener. The xDS server itself refuses connections until the
// control plane has sent the listener's configuration (Listener resource,
// its route configuration, RBAC, security); this makes the health service
// (and /readyz) say the same, so that probes and health-checking load
// balancers agree with what the port does.
type xdsListener struct {
	log     *slog.Logger
	changed chan struct{} // a value after every change of mode; buffered, never blocks

	mu  sync.Mutex // protects err
	err error      // nil while serving
}

func newXDSListener(log *slog.Logger) *xdsListener {
	return &xdsListener{log: log, changed: make(chan struct{}, 1), err: errListenerNotConfigured}
}

// newServer builds grpc-go's xDS-enabled server. It reads the standard
// bootstrap (GRPC_XDS_BOOTSTRAP, a file, or GRPC_XDS_BOOTSTRAP_CONFIG, its
// contents), which must name server_listener_resource_name_template.
func (l *xdsListener) newServer(opts ...grpc.ServerOption) (ordersserver.GRPCServer, error) {
	opts = append(opts, xds.ServingModeCallback(l.modeChanged))
	s, err := xds.NewGRPCServer(opts...)
	if err != nil {
		return nil, fmt.Errorf("--xds: %w", err)
	}
	return s, nil
}

// modeChanged is the xds.ServingModeCallback: it must not block.
func (l *xdsListener) modeChanged(addr net.Addr, args xds.ServingModeChangeArgs) {
	serving := args.Mode == connectivity.ServingModeServing
	l.mu.Lock()
	if serving {
		l.err = nil
	} else {
		l.err = errListenerNotConfigured
		if args.Err != nil {
			l.err = fmt.Errorf("%w: %w", errListenerNotConfigured, args.Err)
		}
	}
	l.mu.Unlock()
	if serving {
		l.log.Info("xDS: listener configured by the control plane; serving", "addr", addr.String())
	} else {
		l.log.Warn("xDS: listener not serving", "addr", addr.String(), "err", args.Err)
	}
	select {
	case l.changed <- struct{}{}:
	default: // a re-check is pending already
	}
}

// ready reports why the listener does not serve, or nil when it does.
func (l *xdsListener) ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// xdsServerCredentials lets the control plane set the listener's
// security (TLS or mTLS with certificates from the bootstrap's certificate
// providers). Where it sets none, the node's own TLS (--tls-*) applies, or
// plaintext without it.
func xdsServerCredentials(fallback credentials.TransportCredentials) (credentials.TransportCredentials, error) {
	if fallback == nil {
		fallback = insecure.NewCredentials()
	}
	return xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: fallback})
}
