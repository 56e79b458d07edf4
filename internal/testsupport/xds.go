package testsupport

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// XDSListenerNameTemplate names the Listener resource a gRPC xDS server
// asks for; %s becomes its listening address (host:port). It is the
// template of Traffic Director / Cloud Service Mesh, and what the bootstrap
// of docs/mesh.md shows.
const XDSListenerNameTemplate = "grpc/server?xds.resource.listening_address=%s"

// XDSControlPlane is a real xDS management server (envoyproxy's
// go-control-plane, state-of-the-world ADS from a snapshot cache) on
// loopback, that serves Listener resources to gRPC xDS servers.
type XDSControlPlane struct {
	// Addr is where it listens (host:port).
	Addr string
	// NodeID is the node id in the bootstrap; every snapshot is for it.
	NodeID string

	cache cachev3.SnapshotCache

	mu        sync.Mutex // protects version, listeners and requested
	version   int
	listeners map[string]*listenerv3.Listener
	requested map[string]bool // resource names xDS clients asked for
}

// StartXDSControlPlane starts a control plane on loopback, stopped when
// the test ends. grpc-go reads its xDS bootstrap from the environment
// when its process starts, so xDS servers under it run as child processes
// with GRPC_XDS_BOOTSTRAP_CONFIG set to Bootstrap.
func StartXDSControlPlane(t testing.TB) *XDSControlPlane {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Not ADS-strict: answer with the listeners there are, so that one
	// xDS server's missing listener does not hold back another's.
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	cp := &XDSControlPlane{Addr: lis.Addr().String(), NodeID: "ordersd-test", cache: cache,
		listeners: map[string]*listenerv3.Listener{}, requested: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			for _, name := range req.GetResourceNames() {
				cp.requested[name] = true
			}
			return nil
		},
	}))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		<-served
	})
	return cp
}

// XDSCertificateProvider is a file_watcher certificate provider instance
// of a bootstrap: PEM files that a mesh's agent would keep fresh.
type XDSCertificateProvider struct {
	Instance                  string // its name, which Listener resources refer to
	CertFile, KeyFile, CAFile string
}

// Bootstrap is the xDS bootstrap (the JSON of GRPC_XDS_BOOTSTRAP_CONFIG)
// of a gRPC xDS server under cp, which it reaches without TLS (insecure
// channel credentials), with the certificate providers given.
func (cp *XDSControlPlane) Bootstrap(providers ...XDSCertificateProvider) string {
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      cp.Addr,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node":                                   map[string]string{"id": cp.NodeID},
		"server_listener_resource_name_template": XDSListenerNameTemplate,
	}
	if len(providers) > 0 {
		instances := map[string]any{}
		for _, p := range providers {
			instances[p.Instance] = map[string]any{"plugin_name": "file_watcher", "config": map[string]string{
				"certificate_file": p.CertFile, "private_key_file": p.KeyFile, "ca_certificate_file": p.CAFile,
				"refresh_interval": "1s",
			}}
		}
		b["certificate_providers"] = instances
	}
	out, err := json.Marshal(b)
	if err != nil {
		panic(err) // maps of strings: cannot fail
	}
	return string(out)
}

// Requested reports whether an xDS client has asked for the resource of
// that name.
func (cp *XDSControlPlane) Requested(name string) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.requested[name]
}

// SetListener serves l (replacing the listener of that name) in a new
// snapshot.
func (cp *XDSControlPlane) SetListener(ctx context.Context, l *listenerv3.Listener) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.listeners[l.GetName()] = l
	return cp.push(ctx)
}

// RemoveListener stops serving the listener of that name.
func (cp *XDSControlPlane) RemoveListener(ctx context.Context, name string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	delete(cp.listeners, name)
	return cp.push(ctx)
}

// push sets a snapshot of every listener; cp.mu is held.
func (cp *XDSControlPlane) push(ctx context.Context) error {
	cp.version++
	var resources []types.Resource
	for _, l := range cp.listeners {
		resources = append(resources, l)
	}
	snap, err := cachev3.NewSnapshot(strconv.Itoa(cp.version), map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: resources})
	if err != nil {
		return err
	}
	return cp.cache.SetSnapshot(ctx, cp.NodeID, snap)
}

// XDSListenerOptions shape the Listener resource of XDSServerListener.
type XDSListenerOptions struct {
	// RBAC are the rules of the RBAC HTTP filter; no filter when nil.
	RBAC *rbacv3.RBAC
	// MTLS names the bootstrap's certificate provider instance that holds
	// the server's certificate and the CA of its clients: the listener
	// then requires mutual TLS. Plaintext when empty.
	MTLS string
}

// XDSServerListener is the Listener resource for a gRPC xDS server
// listening at addr (host:port), as a mesh's control plane would send it:
// one filter chain for every connection, whose HTTP connection manager
// routes every call to the server itself (non-forwarding action) through
// the RBAC filter, if any, and the router filter.
func XDSServerListener(addr string, o XDSListenerOptions) (*listenerv3.Listener, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 32)
	if err != nil {
		return nil, err
	}
	var filters []*hcmv3.HttpFilter
	if o.RBAC != nil {
		rbac, err := httpFilter("envoy.filters.http.rbac", &rbacfilterv3.RBAC{Rules: o.RBAC})
		if err != nil {
			return nil, err
		}
		filters = append(filters, rbac)
	}
	router, err := httpFilter("envoy.filters.http.router", &routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "ordersd-inbound",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "ordersd",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{},
				}},
			}},
		}},
		HttpFilters: append(filters, router),
	})
	if err != nil {
		return nil, err
	}
	var transport *corev3.TransportSocket
	if o.MTLS != "" {
		provider := &tlsv3.CertificateProviderPluginInstance{InstanceName: o.MTLS}
		tls, err := anypb.New(&tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateProviderInstance: provider,
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: provider,
				}},
			},
		})
		if err != nil {
			return nil, err
		}
		transport = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tls}}
	}
	return &listenerv3.Listener{
		Name: fmt.Sprintf(XDSListenerNameTemplate, addr),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       host,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name:            "ordersd",
			Filters:         []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
			TransportSocket: transport,
		}},
	}, nil
}

func httpFilter(name string, config proto.Message) (*hcmv3.HttpFilter, error) {
	typed, err := anypb.New(config)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed}}, nil
}
