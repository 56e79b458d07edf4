package deadletters

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Events is what dead letters need of the event store
// (*eventstore.Store): its streams provisioned, the events they point at,
// and its view of errors.
type Events interface {
	// EnsureStreams provisions the streams, these beside them, when they
	// are not known to exist.
	EnsureStreams(ctx context.Context) error
	// ProvisionAgain makes the next call provision them again.
	ProvisionAgain()
	// Layout is the layout of its streams: the dead letters' subjects and
	// the partitions of their events follow it.
	Layout() eventstore.Layout
	// EventAt reads the event at a sequence of a partition's stream.
	EventAt(ctx context.Context, p eventstore.Partition, seq uint64) (*ordersv1.OrderEvent, error)
	// Classify turns an error into one of eventstore's sentinels.
	Classify(err error) error
}

// Options configure a Store: the settings of the event store it sits
// beside, which its streams share.
type Options struct {
	// Stream is the event store's Options.Stream: the streams of dead
	// letters and markers have its replicas (and the markers its duplicate
	// window); eventstore's defaults for zero fields.
	Stream eventstore.StreamOptions
	// OpTimeout bounds each step of an operation; eventstore.DefaultOpTimeout
	// when zero.
	OpTimeout time.Duration
	// Logger receives the log lines; slog.Default() when nil.
	Logger *slog.Logger
}

// Store reads, redrives and purges the dead letters of the durable
// consumers of ORDERS. It is safe for concurrent use.
type Store struct {
	events    Events
	js        jetstream.JetStream
	opts      eventstore.StreamOptions
	opTimeout time.Duration
	log       *slog.Logger
	state     state // whether dead letters are recorded
}

// New returns the dead letters beside events, which it joins as their
// companion (events.Accompany), so that their streams are provisioned with
// its own. Call it before the event store is used.
func New(events *eventstore.Store, js jetstream.JetStream, o Options) (*Store, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: no JetStream context", eventstore.ErrInvalidOption)
	}
	if o.OpTimeout < 0 {
		return nil, fmt.Errorf("%w: operation timeout must be positive, got %s", eventstore.ErrInvalidOption, o.OpTimeout)
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = eventstore.DefaultOpTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Store{events: events, js: js, opts: o.Stream.WithDefaults(), opTimeout: o.OpTimeout, log: o.Logger}
	events.Accompany(s)
	return s, nil
}

// Provision implements eventstore.Companion: it creates or updates the
// streams of dead letters and markers, and records whether dead letters
// are recorded.
func (s *Store) Provision(ctx context.Context) error {
	off, err := provision(ctx, s.js, s.events.Layout(), s.opts)
	if err != nil {
		return err
	}
	s.state.set(s.log, off)
	return nil
}
