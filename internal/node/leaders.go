package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/leaders"
	"github.com/ordersd/ordersd/internal/metrics"
)

// Streams are the streams ordersd provisions in layout l, whose leaders
// it spreads over a cluster and reports in ordersd_stream_leader: every
// partition's (ORDERS and ORDER_IDS in layout 2), then the dead letters'
// and the redrive markers'.
func Streams(l eventstore.Layout) []string {
	return slices.Concat(leaderGroups(l)...)
}

// leaderGroups are Streams in the groups whose leaders are spread each on
// their own: the partitions, whose leaders take the orders' writes, one
// per server as far as they go; then the rest.
func leaderGroups(l eventstore.Layout) [][]string {
	var partitions []string
	for _, p := range l.All() {
		partitions = append(partitions, p.Stream())
	}
	rest := []string{deadletters.Stream, deadletters.RedriveStream}
	if !l.Partitioned() {
		rest = append([]string{eventstore.IndexStreamName}, rest...)
	}
	return [][]string{partitions, rest}
}

// newRebalancer checks the placement of ordersd's streams every
// cfg.RebalanceInterval. It moves leaders only on the node whose
// embedded NATS server is the JetStream meta leader, and only with
// cfg.Rebalance: one node of an embedded cluster at a time, chosen by the
// cluster's own election. With --nats-url no ordersd node is part of the
// NATS cluster, so none moves leaders on its own (`ordersd rebalance`
// does it once).
func newRebalancer(cfg Config, conn *natsConn, m *metrics.Metrics, log *slog.Logger) (*leaders.Rebalancer, error) {
	var moves func() bool
	if cfg.Rebalance && conn.embedded != nil {
		ns := conn.embedded
		moves = func() bool { return ns.JetStreamIsClustered() && ns.JetStreamIsLeader() }
	}
	return leaders.New(conn.nc, leaders.Options{Streams: leaderGroups(cfg.Layout()), Interval: cfg.RebalanceInterval, Timeout: cfg.OpTimeout,
		Moves: moves, Logger: log, Metrics: m})
}

// rebalanceLimit bounds `ordersd rebalance`: its moves and the elections
// they start.
const rebalanceLimit = time.Minute

// Rebalance spreads the leaders of ordersd's streams over the servers of
// the NATS cluster at cfg.NATSURL once, now (leaders.Rebalancer.Rebalance,
// within rebalanceLimit), whether or not a node would. It needs
// --nats-url: the nodes of an embedded cluster hold their data
// directories, so it reaches their NATS through one node's --nats-listen.
func Rebalance(ctx context.Context, cfg Config, log *slog.Logger) (leaders.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, rebalanceLimit)
	defer cancel()
	if err := cfg.Validate(); err != nil {
		return leaders.Report{}, err
	}
	if cfg.NATSURL == "" {
		return leaders.Report{}, fmt.Errorf("%w: rebalance talks to the running cluster: give --nats-url (one node's --nats-listen, opened with --nats-listen-access full) and its credentials", ErrInvalidConfig)
	}
	conn, err := connectNATS(cfg, log)
	if err != nil {
		return leaders.Report{}, err
	}
	defer conn.close(cfg.ShutdownTimeout, log)
	r, err := newRebalancer(cfg, conn, nil, log)
	if err != nil {
		return leaders.Report{}, err
	}
	return r.Rebalance(ctx)
}
