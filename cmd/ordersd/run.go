package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/eventstore"
	ordersserver "github.com/ordersd/ordersd/server"
)

// healthInterval is how often the health service re-checks JetStream
// between connection events.
const healthInterval = 2 * time.Second

// run starts ordersd and blocks until ctx is cancelled, then shuts down in
// order: health goes NOT_SERVING, the gRPC server stops taking calls and
// lets those in flight finish (cut off after cfg.shutdownTimeout), the NATS
// connection drains, and the embedded NATS server stops. listening, when
// not nil, is told the gRPC address once it accepts calls.
func run(ctx context.Context, cfg config, log *slog.Logger, listening func(net.Addr)) error {
	var embedded *server.Server
	if cfg.natsURL == "" {
		ns, err := eventstore.StartEmbedded(eventstore.EmbeddedOptions{DataDir: cfg.dataDir, Logger: log})
		if err != nil {
			return err
		}
		embedded = ns
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			log.Info("embedded NATS stopped")
		}()
		log.Info("embedded NATS started", "data_dir", cfg.dataDir)
	}
	nc, err := eventstore.Connect(cfg.natsURL, embedded, log)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer drain(nc, cfg.shutdownTimeout, log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	store := eventstore.New(js, eventstore.Options{
		Stream:    eventstore.StreamOptions{Replicas: cfg.replicas, DuplicateWindow: cfg.duplicateWindow},
		OpTimeout: cfg.opTimeout,
		Logger:    log,
	})
	if err := store.Ready(ctx); err != nil {
		// Not fatal: the health watcher keeps trying, and reports
		// NOT_SERVING until the stream is there.
		log.Warn("JetStream not ready yet; serving NOT_SERVING until it is", "err", err)
	}

	tokens, err := ackTokens(cfg.ackTokenKeyFile, log)
	if err != nil {
		return err
	}
	monitor := consumers.NewMonitor(nc, log)
	defer monitor.Close()
	stopping, beginShutdown := context.WithCancel(context.Background())
	defer beginShutdown()
	svc := ordersserver.NewOrderService(ordersserver.Deps{
		Store:      store,
		WorkQueues: consumers.NewWorkQueues(store, nc, tokens, log),
		Tokens:     tokens,
		Acker:      consumers.NewAcker(nc, cfg.opTimeout),
		Watcher:    consumers.NewWatcher(monitor, store),
		Stopping:   stopping,
	}, log)
	hs := ordersserver.NewHealthServer()
	gs := ordersserver.NewGRPCServer(svc, hs, log)
	lis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.grpcAddr, err)
	}
	log.Info("ordersd serving gRPC", "addr", lis.Addr().String(), "nats", natsMode(cfg))
	if listening != nil {
		listening(lis.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	healthCtx, stopHealth := context.WithCancel(gctx)
	defer stopHealth()
	g.Go(func() error {
		ordersserver.WatchHealth(healthCtx, hs, nc, store.Ready, healthInterval, log)
		return nil
	})
	if cfg.review {
		reviewer := consumers.NewReviewer(store, consumers.ReviewOptions{LimitMinor: cfg.reviewLimit}, log)
		g.Go(func() error {
			reviewer.Run(stopping)
			return nil
		})
	}
	g.Go(func() error {
		if err := gs.Serve(lis); err != nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.shutdownTimeout)
		stopHealth()
		beginShutdown() // ends streams and the review worker, releasing what they hold
		stopGRPC(gs, cfg.shutdownTimeout, log)
		return nil
	})
	return g.Wait()
}

// stopGRPC stops taking calls and waits for those in flight, then cuts
// off whatever is left after timeout (long streams, slow clients).
func stopGRPC(gs interface {
	GracefulStop()
	Stop()
}, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		log.Warn("calls still running after the shutdown timeout; cutting them off")
		gs.Stop()
		<-done
	}
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

// ackTokens returns the signer of ack tokens, with the key from keyFile or
// a random one.
func ackTokens(keyFile string, log *slog.Logger) (*consumers.AckTokens, error) {
	if keyFile == "" {
		log.Warn("no --ack-token-key-file: ack tokens use a random key, so they work only on this process and not after a restart; give every node the same key file to ack on any of them")
		return consumers.RandomAckTokens(), nil
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ack-token-key-file: %w", err)
	}
	tokens, err := consumers.NewAckTokens(bytes.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("--ack-token-key-file %s: %w", keyFile, err)
	}
	return tokens, nil
}

func natsMode(cfg config) string {
	if cfg.natsURL == "" {
		return "embedded"
	}
	return "external"
}
