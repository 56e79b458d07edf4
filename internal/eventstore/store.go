package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/metrics"
)

// DefaultOpTimeout bounds one store operation when the caller's context
// allows longer (or has no deadline at all), so nothing waits forever on an
// unreachable JetStream.
const DefaultOpTimeout = 5 * time.Second

// maxReplicas is the most copies JetStream keeps of a stream.
const maxReplicas = 5

// Options configure a Store. A zero field takes the default its comment
// names; a value out of range makes New fail with ErrInvalidOption.
type Options struct {
	// Layout is how the orders are laid out over streams: layout 2 (one
	// stream) when zero, N partitions otherwise.
	Layout Layout
	// Stream sets the streams of the orders: Replicas 1 to 5 (1 when zero) and a
	// positive DuplicateWindow (10 minutes when zero); see
	// DefaultStreamOptions.
	Stream StreamOptions
	// OpTimeout bounds each operation; positive, DefaultOpTimeout when zero.
	OpTimeout time.Duration
	// Logger receives the store's log lines; slog.Default() when nil.
	Logger *slog.Logger
	// Metrics counts the store's work; none when nil.
	Metrics *metrics.Metrics
}

// validate checks o and fills in the defaults of its zero fields.
func (o Options) validate() (Options, error) {
	switch {
	case o.Stream.Replicas < 0 || o.Stream.Replicas > maxReplicas:
		return o, fmt.Errorf("%w: stream replicas must be 1 to %d, got %d", ErrInvalidOption, maxReplicas, o.Stream.Replicas)
	case o.Stream.DuplicateWindow < 0:
		return o, fmt.Errorf("%w: duplicate window must be positive, got %s", ErrInvalidOption, o.Stream.DuplicateWindow)
	case o.OpTimeout < 0:
		return o, fmt.Errorf("%w: operation timeout must be positive, got %s", ErrInvalidOption, o.OpTimeout)
	}
	if err := o.Layout.Check(); err != nil {
		return o, err
	}
	o.Stream = o.Stream.WithDefaults()
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Store reads and writes order events in the streams of its layout. It is
// safe for concurrent use and holds no order state of its own: every
// answer comes from the streams.
type Store struct {
	js        jetstream.JetStream
	layout    Layout
	opts      StreamOptions
	opTimeout time.Duration
	log       *slog.Logger
	metrics   *metrics.Metrics
	now       func() time.Time
	newID     func() string

	lostAcks   *lostAcks    // frees the slots of acks that never come
	unreadable *Unreadables // reports each unreadable message once

	provisionMu sync.Mutex                  // serialises stream provisioning and Accompany
	provisioned atomic.Bool                 // the stream was created or updated by this process
	streams     atomic.Pointer[streams]     // nil until the streams are known to exist
	companions  atomic.Pointer[[]Companion] // provisioned with the streams; nil: none

	createTurnMu   sync.Mutex    // serialises nextCreateTurn
	lastCreateTurn chan struct{} // the turn of the latest CreateAsync call
}

// New returns a Store that uses js, or an error wrapping ErrInvalidOption
// when o is out of range (see Options for the defaults of zero fields). It
// does not contact JetStream: the stream is provisioned by Ready or on first
// use, so ordersd can start (and report NOT_SERVING) while NATS is still
// out of reach.
func New(js jetstream.JetStream, o Options) (*Store, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: no JetStream context", ErrInvalidOption)
	}
	o, err := o.validate()
	if err != nil {
		return nil, err
	}
	return &Store{
		js:         js,
		layout:     o.Layout,
		opts:       o.Stream,
		opTimeout:  o.OpTimeout,
		log:        o.Logger,
		metrics:    o.Metrics,
		now:        time.Now,
		newID:      func() string { return ulid.Make().String() },
		lostAcks:   &lostAcks{js: js, after: o.OpTimeout},
		unreadable: NewUnreadables(o.Logger, o.Metrics),
	}, nil
}

// Layout is how the store lays its orders out over streams.
func (s *Store) Layout() Layout { return s.layout }

// Unreadables is where the store reports the unreadable messages it
// meets; the node's other readers of the stream (the watch monitor, the
// work queues) report theirs there too, so that each is logged and
// counted once per process.
func (s *Store) Unreadables() *Unreadables { return s.unreadable }

// Result is the outcome of a write.
type Result struct {
	// Order is the order after the write (for a duplicate: after the
	// original write, exactly as it was answered then).
	Order *ordersv1.Order
	// Duplicate is true when the request id was seen before and nothing new
	// was stored.
	Duplicate bool
}

// Ready checks that JetStream answers and the layout's streams exist
// (ORDERS and ORDER_IDS, or every partition's), provisioning them when
// they do not. Health checks call it. A
// stream ORDERS in an older subject layout is ErrLayoutOutdated.
func (s *Store) Ready(ctx context.Context) error {
	_, err := s.ready(ctx)
	return err
}

// ready is Ready that also returns the stream handles. The first success
// in this process creates or updates the streams to the wanted settings (an
// operator may have made them with others, direct get among them); later
// checks only look them up.
func (s *Store) ready(ctx context.Context) (streams, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if !s.js.Conn().IsConnected() {
		return streams{}, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, s.js.Conn().Status())
	}
	var (
		st  streams
		err error
	)
	if s.provisioned.Load() {
		st, err = s.lookUp(ctx)
	}
	if !s.provisioned.Load() || isStreamMissing(err) {
		st, err = s.provision(ctx)
	}
	if err != nil {
		s.streams.Store(nil)
		return streams{}, s.classify(err)
	}
	s.streams.Store(&st)
	return st, nil
}

// lookUp finds the layout's streams.
func (s *Store) lookUp(ctx context.Context) (streams, error) {
	return lookUpStreams(ctx, s.js, s.layout)
}

// provision creates or updates the stream, once at a time. A call that
// finds it under way fails at once instead of queueing behind it: on a node
// whose JetStream is still electing its leaders, provisioning can take the
// whole operation timeout, and callers do better retrying on another node
// (found by the fault run: every client ended up waiting on a restarted
// node).
func (s *Store) provision(ctx context.Context) (streams, error) {
	if !s.provisionMu.TryLock() {
		return streams{}, fmt.Errorf("%w: the stream is being provisioned", ErrUnavailable)
	}
	defer s.provisionMu.Unlock()
	st, err := provisionStreams(ctx, s.js, s.layout, s.opts, s.companionsNow())
	if err != nil && !errors.Is(err, ErrLayoutOutdated) && Classify(err) == err {
		// Not an error the package knows (another stream holding the
		// subjects ORDERS.>, say): without the stream no call can be
		// served, so calls are UNAVAILABLE, as health is NOT_SERVING,
		// not INTERNAL.
		return streams{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err == nil {
		s.provisioned.Store(true)
		s.log.Info(StreamsReadyMessage, "layout", s.layout.Version(), "partitions", len(st.parts), "first_stream", st.parts[0].events.CachedInfo().Config.Name,
			"replicas", s.opts.Replicas, "duplicate_window", s.opts.DuplicateWindow)
	}
	return st, err
}

// StreamsReadyMessage is the log message of a store whose streams are
// provisioned: a process that runs ordersd waits for it.
const StreamsReadyMessage = "streams ready"

// begin bounds an operation by the store's timeout, fails fast while NATS
// is disconnected, and returns the stream handles.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, streams, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	if !s.js.Conn().IsConnected() {
		cancel()
		return nil, nil, streams{}, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, s.js.Conn().Status())
	}
	if p := s.streams.Load(); p != nil {
		return ctx, cancel, *p, nil
	}
	st, err := s.ready(ctx)
	if err != nil {
		cancel()
		return nil, nil, streams{}, err
	}
	return ctx, cancel, st, nil
}
