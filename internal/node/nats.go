package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// natsConn is the node's NATS: its connection and, in the embedded shape,
// the server it runs.
type natsConn struct {
	nc       *nats.Conn
	embedded *server.Server // nil with --nats-url
	opts     []nats.Option  // how to authenticate to it
	url      string
}

// connectNATS starts the embedded server (without --nats-url) and
// connects to it, or connects to the deployment at cfg.NATSURL.
func connectNATS(cfg Config, log *slog.Logger) (*natsConn, error) {
	c := &natsConn{url: cfg.NATSURL}
	if cfg.NATSURL != "" {
		opts, err := cfg.NATSAuth.options()
		if err != nil {
			return nil, err
		}
		c.opts = opts
	} else {
		l := cfg.EmbeddedListen
		l.warn(log)
		if cfg.Cluster.Name != "" && l.Addr == "" {
			// nats-server starts routing to its peers only once it listens
			// for clients: listen on a random loopback port, behind a
			// random token that only this process knows.
			l = EmbeddedListen{Addr: "127.0.0.1:-1", Token: randomToken()}
		}
		switch {
		case l.Addr != "" && l.Token != "":
			c.opts = []nats.Option{nats.Token(l.Token)}
		case l.Addr != "":
			c.opts = []nats.Option{nats.UserInfo(l.User, l.Password)}
		}
		ns, err := eventstore.StartEmbedded(eventstore.EmbeddedOptions{DataDir: cfg.DataDir, Logger: log,
			ServerName: cfg.ServerName, ListenAddr: l.Addr, User: l.User, Password: l.Password, Token: l.Token,
			Cluster: cfg.Cluster, SyncInterval: cfg.SyncInterval, SyncAlways: cfg.SyncAlways})
		if err != nil {
			return nil, err
		}
		c.embedded = ns
		log.Info("embedded NATS started", "data_dir", cfg.DataDir, "listen", l.Addr, "cluster", cfg.Cluster.Name)
	}
	nc, err := eventstore.Connect(c.url, c.embedded, log, c.opts...)
	if err != nil {
		c.stopEmbedded(log)
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	c.nc = nc
	return c, nil
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
