package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/migrate"
)

// Migrate rewrites the stream ORDERS into the subject layout this build
// reads (migrate.Run), or with cfg.Partitions into that many partitions
// (migrate.RunPartitions), reaching NATS as a node would with cfg: the
// embedded server on cfg.DataDir, locked as a running node locks it (so no
// node runs on it meanwhile, and the migration runs offline), or the
// deployment at cfg.NATSURL with its credentials. The stream settings
// (replicas, duplicate window) are cfg's.
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) (migrate.Summary, error) {
	if err := cfg.Validate(); err != nil {
		return migrate.Summary{}, err
	}
	if cfg.NATSURL == "" {
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return migrate.Summary{}, err
		}
		defer lock.release() // last, once the embedded server has stopped
	}
	conn, err := connectNATS(cfg, log)
	if err != nil {
		return migrate.Summary{}, err
	}
	defer conn.close(cfg.ShutdownTimeout, log)
	js, err := jetstream.New(conn.nc, jetstream.WithPublishAsyncTimeout(cfg.OpTimeout))
	if err != nil {
		return migrate.Summary{}, fmt.Errorf("jetstream: %w", err)
	}
	opts := eventstore.StreamOptions{Replicas: cfg.Replicas, DuplicateWindow: cfg.DuplicateWindow}
	if cfg.Partitions > 0 {
		return migrate.RunPartitions(ctx, js, opts, cfg.Partitions, log)
	}
	return migrate.Run(ctx, js, opts, log)
}
