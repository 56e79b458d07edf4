package node

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/tlsfiles"
)

// natsConn is the node's NATS: its connection and, in the embedded shape,
// the server it runs.
type natsConn struct {
	nc       *nats.Conn
	embedded *server.Server // nil with --nats-url
	opts     []nats.Option  // how to authenticate to it
	url      string
	tls      []*tlsfiles.Files // certificates and CAs it reads, to reload
}

// connectNATS starts the embedded server (without --nats-url) and
// connects to it, or connects to the deployment at cfg.NATSURL.
func connectNATS(cfg Config, log *slog.Logger) (*natsConn, error) {
	c := &natsConn{url: cfg.NATSURL}
	if cfg.NATSURL != "" {
		files, err := cfg.NATSAuth.tlsFiles()
		if err != nil {
			return nil, err
		}
		opts, err := cfg.NATSAuth.options(files)
		if err != nil {
			return nil, err
		}
		c.opts = opts
		c.keep(files)
	} else {
		l := cfg.EmbeddedListen
		listenTLS, err := l.tlsFiles(log)
		if err != nil {
			return nil, err
		}
		var routeTLS *tlsfiles.Files
		if cfg.Cluster.Name != "" {
			if routeTLS, err = cfg.ClusterTLS.load(cfg.Cluster.Listen, log); err != nil {
				return nil, err
			}
		}
		c.keep(listenTLS)
		c.keep(routeTLS)
		cluster := cfg.Cluster
		if routeTLS != nil {
			cluster.TLS = routeTLS.MutualConfig()
		}
		var serverTLS *tls.Config
		if listenTLS != nil {
			serverTLS = listenTLS.ServerConfig()
		}
		if cfg.Cluster.Name != "" && l.Addr == "" {
			// nats-server starts routing to its peers only once it listens
			// for clients: listen on a random loopback port, behind a
			// random token that only this process knows.
			l = EmbeddedListen{Addr: "127.0.0.1:-1", Token: randomToken()}
		}
		// ordersd's own connections have a secret of their own: the
		// listener's user may read only.
		var own string
		if l.Addr != "" {
			own = randomToken()
			c.opts = []nats.Option{nats.Token(own)}
		}
		ns, err := natsconn.StartEmbedded(natsconn.EmbeddedOptions{DataDir: cfg.DataDir, Logger: log,
			ServerName: cfg.ServerName, ListenAddr: l.Addr, User: l.User, Password: l.Password, Token: l.Token, ListenTLS: serverTLS,
			ListenFullAccess: l.Access == ListenFull, OwnToken: own, ReaderStreams: Streams(cfg.Layout()),
			Cluster: cluster, SyncInterval: cfg.SyncInterval, SyncAlways: cfg.SyncAlways})
		if err != nil {
			return nil, err
		}
		c.embedded = ns
		log.Info("embedded NATS started", "data_dir", cfg.DataDir, "listen", l.Addr, "listen_tls", listenTLS != nil, "listen_access", l.access(),
			"cluster", cfg.Cluster.Name, "cluster_tls", routeTLS != nil)
	}
	nc, err := natsconn.Connect(c.url, c.embedded, log, c.opts...)
	if err != nil {
		c.stopEmbedded(log)
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	c.nc = nc
	return c, nil
}

// keep notes files to reload (none when nil).
func (c *natsConn) keep(files *tlsfiles.Files) {
	if files != nil {
		c.tls = append(c.tls, files)
	}
}

// connectAnother opens one more connection to the same NATS.
func (c *natsConn) connectAnother(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, c.opts...)
	if c.embedded != nil {
		return nats.Connect("", append(opts, nats.InProcessServer(c.embedded))...)
	}
	return nats.Connect(c.url, opts...)
}

// close drains the connection, then stops the embedded server.
func (c *natsConn) close(timeout time.Duration, log *slog.Logger) {
	drain(c.nc, timeout, log)
	c.stopEmbedded(log)
}

func (c *natsConn) stopEmbedded(log *slog.Logger) {
	if c.embedded == nil {
		return
	}
	c.embedded.Shutdown()
	c.embedded.WaitForShutdown()
	log.Info("embedded NATS stopped")
}

// drain lets pending NATS work finish and closes the connection, within timeout.
func drain(nc *nats.Conn, timeout time.Duration, log *slog.Logger) {
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		log.Warn("NATS drain timed out; closing")
		nc.Close()
	}
}

// randomToken is a secret for the embedded server's private listener.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
