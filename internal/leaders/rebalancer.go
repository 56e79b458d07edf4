package leaders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/metrics"
)

// DefaultInterval is how often a Rebalancer checks the placement when
// Options.Interval is zero.
const DefaultInterval = 30 * time.Second

// firstRetry is the wait before the first check again after a check that
// did not settle (streams not there yet, leaders being elected, moves
// asked for, a failure); the wait doubles up to the interval.
const firstRetry = time.Second

// ErrInvalidOption is wrapped by the error of New when an option is out
// of range.
var ErrInvalidOption = errors.New("invalid rebalancer option")

// Options configure a Rebalancer.
type Options struct {
	// Streams are the names of the streams to spread, in groups each
	// spread on its own (see Plan); those that do not exist are skipped.
	Streams [][]string
	// Interval is the time between two checks of a settled placement;
	// positive, DefaultInterval when zero.
	Interval time.Duration
	// Timeout bounds each JetStream request of a check; positive.
	Timeout time.Duration
	// Moves reports whether this process may move leaders now: one
	// process of a cluster at a time. Nil never moves: the checks then
	// only record the placement.
	Moves func() bool
	// Logger receives the moves and failures; slog.Default() when nil.
	Logger *slog.Logger
	// Metrics records each stream's leader; none when nil.
	Metrics *metrics.Metrics
}

// Rebalancer checks where the leaders of a list of streams are, records
// them in the metric ordersd_stream_leader, and, when Options.Moves says
// so, moves leaders so that none of the servers leads more than its
// share (see Plan). A check that finds nothing to do waits the interval;
// one that moved leaders, failed or found a stream without a leader
// checks again sooner. Nothing it does is fatal.
type Rebalancer struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger
}

// New returns a Rebalancer that talks to JetStream over nc.
func New(nc *nats.Conn, o Options) (*Rebalancer, error) {
	switch {
	case o.Interval < 0:
		return nil, fmt.Errorf("%w: interval must be positive, got %s", ErrInvalidOption, o.Interval)
	case o.Timeout <= 0:
		return nil, fmt.Errorf("%w: timeout must be positive, got %s", ErrInvalidOption, o.Timeout)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Rebalancer{nc: nc, js: js, opts: o, log: o.Logger.With("component", "leaders")}, nil
}

// Run checks the placement at once and then again and again until ctx
// ends. It runs on its own goroutine: nothing waits for it.
func (r *Rebalancer) Run(ctx context.Context) {
	retry := firstRetry
	for {
		wait := r.opts.Interval
		if !r.check(ctx, r.opts.Moves != nil && r.opts.Moves()) {
			wait = min(retry, r.opts.Interval)
			retry *= 2
		} else {
			retry = firstRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// check reads the placement, records it, and when move is true asks for
// the moves of its Plan. It reports whether the placement is settled:
// read, every stream found has a leader, and nothing was to be moved.
func (r *Rebalancer) check(ctx context.Context, move bool) (settled bool) {
	streams, err := r.read(ctx)
	if err != nil {
		r.opts.Metrics.StreamLeaders(nil)
		r.log.Warn("cannot read where the stream leaders are; trying again", "err", err)
		return false
	}
	r.record(streams)
	settled = len(streams) > 0 && allLed(streams)
	if !move {
		return settled
	}
	moves, err := r.Move(ctx, streams)
	if err != nil {
		r.log.Warn("leader moves failed; trying again", "err", err)
	}
	return settled && len(moves) == 0 && err == nil
}

// read reads the placement of the streams, within the timeout.
func (r *Rebalancer) read(ctx context.Context) ([]Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	return Read(ctx, r.js, r.opts.Streams)
}

// Placement reads where the leaders and copies of the streams are now.
func (r *Rebalancer) Placement(ctx context.Context) ([]Stream, error) {
	streams, err := r.read(ctx)
	if err == nil {
		r.record(streams)
	}
	return streams, err
}

// record puts the leaders in the metric.
func (r *Rebalancer) record(streams []Stream) {
	leaders := make(map[string]string, len(streams))
	for _, s := range streams {
		leaders[s.Name] = s.Leader
	}
	r.opts.Metrics.StreamLeaders(leaders)
}

// Move asks for the moves that Plan makes of streams, each within the
// timeout, and returns those it asked for. A refused or failed move is
// logged and the others are still asked for; the error joins the failures.
func (r *Rebalancer) Move(ctx context.Context, streams []Stream) ([]Move, error) {
	var errs []error
	moves := Plan(streams)
	for _, m := range moves {
		reqCtx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		err := StepDown(reqCtx, r.nc, m)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("stream leader stepped down for a server that leads fewer streams", "stream", m.Stream, "from", m.From, "to", m.To)
	}
	return moves, errors.Join(errs...)
}
