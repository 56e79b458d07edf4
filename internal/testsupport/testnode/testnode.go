// Package testnode runs whole ordersd nodes (node.Run, as the ordersd
// command runs them) in a test process, for tests of what calls ordersd from outside:
// the client package and the examples. Each node sits behind a TCP proxy
// (internal/faultproxy), so a test can kill it as a crash looks to its
// clients (every connection cut at once) and start it again at the same
// address.
//
// It is not part of package testsupport because it imports internal/node,
// whose own tests import testsupport.
package testnode

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/faultproxy"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// startTimeout bounds a node's start; stopTimeout its stop.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
)

// Options configure a node.
type Options struct {
	// NATSURL is a NATS server that several nodes share (ordersd
	// --nats-url); empty: the node embeds its own, in a temporary directory.
	NATSURL string
	// AckTokenKeyFile signs ack tokens; give nodes that share NATSURL the
	// same one (ordersd --ack-token-key-file). Empty: a random key.
	AckTokenKeyFile string
	// Review runs the order-review worker (ordersd --review).
	Review bool
	// TLS is the gRPC server's TLS (ordersd --tls-cert, --tls-key,
	// --tls-client-ca); plaintext when empty.
	TLS node.TLSConfig
	// Auth turns authentication on (ordersd --auth-tokens-file, ...).
	Auth auth.Config
}

// Node is one ordersd node running in the test process.
type Node struct {
	cfg       node.Config
	proxy     *faultproxy.Proxy // between clients and the node
	natsProxy *faultproxy.Proxy // between the node and Options.NATSURL; nil when embedded
	natsURL   string            // Options.NATSURL
	tmp       string            // the embedded server's data, removed by Close

	mu     sync.Mutex         // protects cancel and done
	cancel context.CancelFunc // stops the running node.Run; nil when stopped
	done   chan error         // node.Run's result
}

// Start runs a node and returns once it serves.
func Start(o Options) (*Node, error) {
	n := &Node{cfg: node.Config{
		GRPCAddr:          "127.0.0.1:0",
		NATSURL:           o.NATSURL,
		Replicas:          1,
		DuplicateWindow:   2 * time.Minute,
		OpTimeout:         5 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		AckTokenKeyFile:   o.AckTokenKeyFile,
		Review:            o.Review,
		ReviewLimit:       100_000,
		ReviewConcurrency: node.DefaultReviewConcurrency,
		Limits:            node.DefaultLimits,
		TLS:               o.TLS,
		Auth:              o.Auth,
		PublicServices:    auth.DefaultPublicServices, // as ordersd's flag default
	}}
	if o.NATSURL != "" {
		u, err := url.Parse(o.NATSURL)
		if err != nil {
			return nil, err
		}
		if n.natsProxy, err = faultproxy.New("127.0.0.1:0", u.Host); err != nil {
			return nil, err
		}
		n.natsURL, n.cfg.NATSURL = o.NATSURL, "nats://"+n.natsProxy.Addr()
	} else {
		dir, err := os.MkdirTemp("", "ordersd-testnode-")
		if err != nil {
			return nil, err
		}
		n.tmp, n.cfg.DataDir = dir, filepath.Join(dir, "data")
	}
	ready, err := n.run()
	if err != nil {
		n.Close()
		return nil, err
	}
	// From now on the node listens at the same address after each restart,
	// and clients reach it through the proxy.
	n.cfg.GRPCAddr = ready.GRPCAddr.String()
	if n.proxy, err = faultproxy.New("127.0.0.1:0", n.cfg.GRPCAddr); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// run starts node.Run and waits until it serves.
func (n *Node) run() (node.Ready, error) {
	ctx, cancel := context.WithCancel(context.Background())
	readies := make(chan node.Ready, 1)
	done := make(chan error, 1)
	cfg := n.cfg
	cfg.OnReady = func(r node.Ready) { readies <- r }
	go func() { done <- node.Run(ctx, cfg, testsupport.Logger()) }()
	select {
	case r := <-readies:
		n.mu.Lock()
		n.cancel, n.done = cancel, done
		n.mu.Unlock()
		return r, nil
	case err := <-done:
		cancel()
		return node.Ready{}, fmt.Errorf("ordersd did not start: %w", err)
	case <-time.After(startTimeout):
		cancel()
		return node.Ready{}, fmt.Errorf("ordersd did not start within %s", startTimeout)
	}
}

// NATSURL is the NATS server the node uses, when it is not embedded.
func (n *Node) NATSURL() string { return n.natsURL }

// CutNATS cuts the node off from its NATS server (not embedded): it goes
// on serving gRPC, and its health turns NOT_SERVING. RestoreNATS lets it
// reconnect.
func (n *Node) CutNATS() { n.natsProxy.Cut() }

// RestoreNATS ends CutNATS.
func (n *Node) RestoreNATS() { n.natsProxy.Restore() }

// Stall freezes every connection to the node, open and new, as behind a
// dead link: nothing gets through, nothing is closed. Resume ends it.
func (n *Node) Stall() { n.proxy.Stall() }

// Resume ends Stall.
func (n *Node) Resume() { n.proxy.Resume() }

// Addr is where clients reach the node.
func (n *Node) Addr() string { return n.proxy.Addr() }

// Kill makes the node die as a crash looks to its clients: every
// connection to it ends at once, mid-call, and new ones are refused; then
// the node process stops behind that cut.
func (n *Node) Kill() error {
	n.proxy.Cut()
	return n.stop()
}

// Stop stops the node as SIGTERM does: health NOT_SERVING, streams end
// with UNAVAILABLE, calls in flight finish.
func (n *Node) Stop() error {
	err := n.stop()
	n.proxy.Cut() // the listener is closed: refuse at the proxy too
	return err
}

func (n *Node) stop() error {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(stopTimeout):
		return fmt.Errorf("ordersd did not stop within %s", stopTimeout)
	}
}

// Restart starts a stopped or killed node again, at the same address and
// on the same data.
func (n *Node) Restart() error {
	if _, err := n.run(); err != nil {
		return err
	}
	n.proxy.Restore()
	return nil
}

// Close stops the node and removes its temporary files.
func (n *Node) Close() error {
	err := n.stop()
	if n.proxy != nil {
		err = errors.Join(err, n.proxy.Close())
	}
	if n.natsProxy != nil {
		err = errors.Join(err, n.natsProxy.Close())
	}
	if n.tmp != "" {
		err = errors.Join(err, os.RemoveAll(n.tmp))
	}
	return err
}

// StartT is Start for one test: the node is closed when the test ends.
func StartT(t testing.TB, o Options) *Node {
	t.Helper()
	n, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return n
}

// StartShared runs count nodes on one NATS server started for the test
// (ordersd --nats-url), with one ack token key: replicas of one deployment.
func StartShared(t testing.TB, count int, o Options) []*Node {
	t.Helper()
	o.NATSURL = testsupport.StartNATS(t).ClientURL()
	o.AckTokenKeyFile = testsupport.AckKeyFile(t)
	nodes := make([]*Node, count)
	for i := range nodes {
		nodes[i] = StartT(t, o)
	}
	return nodes
}
