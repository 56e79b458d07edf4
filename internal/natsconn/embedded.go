package natsconn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// EmbeddedOptions configure the NATS server that ordersd runs in process
// when it is not given --nats-url.
type EmbeddedOptions struct {
	// DataDir is where JetStream keeps the stream; it survives restarts.
	DataDir string
	// ServerName names the node in logs and in JetStream's metadata.
	ServerName string
	// Logger receives the server's own log lines.
	Logger *slog.Logger
	// ReadyTimeout bounds start-up, including JetStream's recovery of the
	// stored data; 30s when zero.
	ReadyTimeout time.Duration
	// ListenAddr, when set (host:port), opens the server to NATS clients;
	// otherwise it accepts in-process connections only. Clients must then
	// authenticate with User and Password, or Token, and get
	// ReaderPermissions unless ListenFullAccess; ordersd's own connections
	// authenticate with OwnToken and have every right.
	ListenAddr       string
	User, Password   string
	Token            string
	ListenFullAccess bool
	OwnToken         string
	// ReaderStreams are the streams the listener's user may read without
	// ListenFullAccess (ReaderPermissions).
	ReaderStreams []string
	// ListenTLS, when set, is the TLS of ListenAddr: clients must use it,
	// and show a certificate when it requires one.
	ListenTLS *tls.Config
	// Cluster, when its Name is set, makes the server one node of a
	// JetStream cluster of embedded servers (ordersd nodes) that replicate
	// the stream among themselves.
	Cluster EmbeddedCluster
	// SyncInterval is how often JetStream fsyncs stored messages to disk
	// (nats-server's sync_interval; its default, 2 minutes, when zero).
	// SyncAlways fsyncs every message before it is acknowledged.
	SyncInterval time.Duration
	SyncAlways   bool
}

// EmbeddedCluster places an embedded server in a cluster.
type EmbeddedCluster struct {
	Name   string   // the cluster's name, the same on every node
	Listen string   // host:port this node listens on for its peers
	Routes []string // the peers' cluster addresses (nats-route://host:port or host:port)
	// TLS, when set, is the TLS of the routes, both those the node accepts
	// and those it opens; it should require and verify the peer's
	// certificate (mutual TLS), which then authenticates the route.
	TLS *tls.Config
}

// StartEmbedded starts a NATS server with JetStream that stores under
// o.DataDir and, unless o.ListenAddr is set, accepts only in-process
// connections (it opens no port).
// Shut it down with Shutdown and WaitForShutdown after draining clients.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.DataDir == "" {
		return nil, fmt.Errorf("%w: embedded NATS needs a data directory", eventstore.ErrInvalidArgument)
	}
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if o.ServerName == "" {
		o.ServerName = "ordersd"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		JetStream:  true,
		StoreDir:   o.DataDir,
		DontListen: true, // in-process clients only
		NoSigs:     true, // ordersd handles signals itself
	}
	opts.SyncInterval, opts.SyncAlways = o.SyncInterval, o.SyncAlways
	if o.Cluster.Name != "" {
		if err := o.Cluster.apply(opts); err != nil {
			return nil, err
		}
	}
	if o.ListenAddr != "" {
		host, port, err := net.SplitHostPort(o.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen address: %w", err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded NATS listen port %q: %w", port, err)
		}
		if o.OwnToken == "" {
			return nil, fmt.Errorf("%w: an embedded NATS listener needs the token of ordersd's own connections", eventstore.ErrInvalidArgument)
		}
		opts.Host, opts.DontListen = host, false
		opts.CustomClientAuthentication = &listenerAuth{own: o.OwnToken, user: o.User, password: o.Password, token: o.Token, full: o.ListenFullAccess, streams: o.ReaderStreams}
		if o.ListenTLS != nil {
			opts.TLSConfig, opts.TLS = o.ListenTLS, true
			opts.TLSVerify = o.ListenTLS.ClientAuth == tls.RequireAndVerifyClientCert
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.SetLoggerV2(&natsLogger{log: o.Logger.With("component", "nats-server"), routesVerified: o.Cluster.TLS != nil && o.Cluster.TLS.VerifyConnection != nil}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS not ready within %s", o.ReadyTimeout)
	}
	return ns, nil
}

// apply sets the cluster options of a server.
func (c EmbeddedCluster) apply(opts *server.Options) error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("embedded NATS cluster listen address %q: %w", c.Listen, err)
	}
	opts.Cluster.Name, opts.Cluster.Host = c.Name, host
	// Clients take their servers from their own configuration (ordersd's
	// --nats-url lists them), not from the cluster's gossip: the address a
	// node listens on (0.0.0.0, a container's address) is often not the one
	// other hosts reach it by, and a client must not route around the
	// network path it was given (a proxy, a load balancer).
	opts.Cluster.NoAdvertise = true
	if opts.Cluster.Port, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("embedded NATS cluster port %q: %w", port, err)
	}
	var routes []string
	for _, r := range c.Routes {
		if !strings.Contains(r, "://") {
			r = "nats-route://" + r
		}
		routes = append(routes, r)
	}
	opts.Cluster.TLSConfig = c.TLS
	opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	if len(opts.Routes) != len(routes) {
		return fmt.Errorf("embedded NATS cluster routes %q are not all valid URLs", c.Routes)
	}
	return nil
}

// natsLogger writes nats-server's log lines to slog.
type natsLogger struct {
	log *slog.Logger
	// routesVerified: the route TLS verifies the peers itself, in
	// VerifyConnection (against CAs that can be reloaded), so nats-server's
	// warning that it does not is untrue here and left out.
	routesVerified bool
}

// routesUnverifiedWarning is what nats-server says when the route TLS skips
// crypto/tls's own verification.
const routesUnverifiedWarning = "TLS certificate chain and hostname of solicited routes will not be verified"

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any) {
	if l.routesVerified && strings.HasPrefix(format, routesUnverifiedWarning) {
		return
	}
	l.log.Warn(fmt.Sprintf(format, v...))
}
func (l *natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
