// Package testsupport holds what ordersd's tests share: a real NATS server
// with JetStream started in the test process, connections to it, a logger,
// bounded contexts, certificates and ack-token key files, and an xDS
// control plane. Nothing here is mocked: the server is nats-server
// itself, from its Go module.
package testsupport

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startTimeout bounds a test server's start-up, JetStream recovery included.
const startTimeout = 10 * time.Second

// StartNATS runs a nats-server with JetStream for one test: on a random
// loopback port, storing under a temporary directory, without signal
// handlers. Each tune function may change the options first (a fixed port,
// a store directory that outlives a restart, authentication, TLS). The
// server is shut down when the test ends.
func StartNATS(t testing.TB, tune ...func(*natsserver.Options)) *natsserver.Server {
	t.Helper()
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
	}
	for _, f := range tune {
		f(opts)
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(startTimeout) {
		t.Fatalf("NATS not ready within %s", startTimeout)
	}
	return ns
}

// Port makes StartNATS listen on port (a restarted server keeps its
// address); 0 keeps a random one.
func Port(port int) func(*natsserver.Options) {
	return func(o *natsserver.Options) {
		if port != 0 {
			o.Port = port
		}
	}
}

// StoreDir makes StartNATS keep JetStream's data in dir, so that a server
// started again on dir finds the stream.
func StoreDir(dir string) func(*natsserver.Options) {
	return func(o *natsserver.Options) { o.StoreDir = dir }
}

// InProcessOnly makes StartNATS open no port: only in-process connections
// reach the server, as with ordersd's embedded server.
func InProcessOnly(o *natsserver.Options) { o.DontListen = true }

// Connect opens a connection to ns in process, closed when the test ends.
func Connect(t testing.TB, ns *natsserver.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(ns)}, opts...)...)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream opens an in-process connection to ns and its JetStream
// context, for a test that looks at the stream directly.
func JetStream(t testing.TB, ns *natsserver.Server, opts ...jetstream.JetStreamOpt) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Connect(t, ns), opts...)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
