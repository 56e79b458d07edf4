package eventstore

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// A stream ORDERS made by someone else with other settings (direct get,
// which may answer from a lagging replica) is brought to ordersd's
// settings when ordersd first finds it.
func TestReadyUpdatesAnExistingStream(t *testing.T) {
	js, log := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamName, Subjects: []string{StreamSubjects},
		AllowDirect: true, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	store, err := New(js, Options{Stream: StreamOptions{DuplicateWindow: 5 * time.Minute}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.AllowDirect || cfg.Duplicates != 5*time.Minute || !cfg.DenyDelete || !cfg.DenyPurge {
		t.Fatalf("stream not updated: allow_direct %v, duplicates %v, deny_delete %v, deny_purge %v", cfg.AllowDirect, cfg.Duplicates, cfg.DenyDelete, cfg.DenyPurge)
	}
	if err := stream.Purge(ctx); err == nil {
		t.Fatal("the stream ORDERS was purged")
	}
}

// While one caller provisions the stream (which can take the whole
// operation timeout on a node still joining its cluster), others fail at
// once with ErrUnavailable, free to retry on another node, instead of
// queueing behind it.
func TestProvisioningUnderWayFailsFast(t *testing.T) {
	js, log := startJetStream(t)
	store, err := New(js, Options{Logger: log, OpTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store.provisionMu.Lock() // another caller is provisioning
	start := time.Now()
	err = store.Ready(context.Background())
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("Ready while provisioning is under way: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	store.provisionMu.Unlock()
	if err := store.Ready(context.Background()); err != nil {
		t.Fatalf("Ready once provisioning is free: %v", err)
	}
}

// startJetStream runs a NATS server for one test and connects to it.
func startJetStream(t *testing.T) (jetstream.JetStream, *slog.Logger) {
	t.Helper()
	return testsupport.JetStream(t, testsupport.StartNATS(t, testsupport.InProcessOnly)), testsupport.Logger()
}
