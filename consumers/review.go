package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/telemetry"
)

// ReviewConsumer is the durable pull consumer of the order-review worker.
const ReviewConsumer = "order-review"

// Reserved reports whether the durable consumer name belongs to ordersd
// itself (the order-review worker's): only admins may consume from it,
// and it is neither updated nor deleted through the QueueService.
func Reserved(name string) bool { return name == ReviewConsumer }

// reviewMaxDeliveries is the default of ReviewOptions.MaxDeliveries: how
// many times a created event is delivered to the reviewer before it
// becomes a dead letter of order-review. With the
// growing pause after each failure (reviewRetryDelay) that is several
// minutes of failed reviews, well past a leader election, so only an
// event that cannot be reviewed ends there.
const reviewMaxDeliveries = 20

// reviewRetryDelay is the pause before a failed review's event is
// delivered again: one second more for each attempt, at most 30.
func reviewRetryDelay(attempt uint64) time.Duration {
	return time.Duration(min(max(attempt, 1), 30)) * time.Second
}

// ReviewOptions configure the order-review worker.
type ReviewOptions struct {
	// LimitMinor is the largest total_minor approved; larger orders are
	// rejected. It must not be negative; 0 approves only orders of total 0.
	LimitMinor int64
	// AckWait is how long a created event may be in review before it is
	// delivered again (to this node or another): DefaultAckWait when 0,
	// else at least minReviewAckWait.
	AckWait time.Duration
	// Concurrency is how many reviews one worker keeps in flight at once
	// (decisions published, their acks awaited): DefaultReviewConcurrency
	// when 0, else 1 to MaxReviewConcurrency.
	Concurrency int
	// MaxDeliveries is how many times a created event is delivered to the
	// reviewer before it becomes a dead letter of order-review:
	// reviewMaxDeliveries when 0, else at least 1.
	MaxDeliveries int
}

// DefaultReviewConcurrency is the reviews in flight per worker by default:
// enough to keep up with creates at full speed on one node (cmd/ordersbench
// -workloads review shows whether it does).
const DefaultReviewConcurrency = 256

// MaxReviewConcurrency bounds ReviewOptions.Concurrency. Every review in
// flight is an asynchronous publish awaiting its ack, and nats.go holds at
// most 4,000 of those per connection (its default), shared with the
// writes of every RPC on the node: beyond it publishes stall, then fail.
const MaxReviewConcurrency = 1024

// reviewMaxAckPending is the consumer's MaxAckPending: room for a few
// nodes' reviews in flight, and never less than one node's concurrency.
func reviewMaxAckPending(concurrency int) int { return max(1000, concurrency) }

// minReviewAckWait is the shortest AckWait allowed: a review is a read and
// a write to JetStream, each bounded by the store's timeout, and an ack
// wait shorter than a second would have healthy reviews redelivered.
const minReviewAckWait = time.Second

// withDefaults checks o and fills in its defaults.
func (o ReviewOptions) withDefaults() (ReviewOptions, error) {
	if o.LimitMinor < 0 {
		return o, fmt.Errorf("%w: review limit %d is negative", ErrInvalidOption, o.LimitMinor)
	}
	switch {
	case o.AckWait == 0:
		o.AckWait = DefaultAckWait
	case o.AckWait < minReviewAckWait:
		return o, fmt.Errorf("%w: review ack wait %s is shorter than %s", ErrInvalidOption, o.AckWait, minReviewAckWait)
	}
	switch {
	case o.MaxDeliveries == 0:
		o.MaxDeliveries = reviewMaxDeliveries
	case o.MaxDeliveries < 0:
		return o, fmt.Errorf("%w: review max deliveries %d is negative", ErrInvalidOption, o.MaxDeliveries)
	}
	switch {
	case o.Concurrency == 0:
		o.Concurrency = DefaultReviewConcurrency
	case o.Concurrency < 0 || o.Concurrency > MaxReviewConcurrency:
		return o, fmt.Errorf("%w: review concurrency must be 1 to %d, got %d", ErrInvalidOption, MaxReviewConcurrency, o.Concurrency)
	}
	return o, nil
}

// ReviewStore is what the review worker needs of the event store
// (*eventstore.Store): its durable consumer, and the transition path the
// RPCs use, started from the state a created event carries.
type ReviewStore interface {
	CreateOrUpdateConsumers(ctx context.Context, cfg jetstream.ConsumerConfig) ([]eventstore.QueueConsumer, error)
	TransitionFrom(ctx context.Context, known *ordersv1.Order, c eventstore.Change) (*eventstore.PendingTransition, error)
}

// Reviewer is the built-in order-review worker (the seed's pull consumer):
// it takes created orders from the durable consumer order-review as a work
// queue shared by every ordersd node, approves those whose total is within
// the limit and rejects the rest, and acks each event only once its
// transition is stored.
//
// Reviews are pipelined: the worker fetches created events in batches and
// keeps up to Concurrency decisions in flight. A created event's payload is
// the order's state at the event's sequence, so each decision is built
// from it without a read and published asynchronously with that sequence
// as expected revision (eventstore.Store.TransitionFrom); when the order
// moved on meanwhile (cancelled, or reviewed already through a redelivery
// on another node) the store falls back to its read-then-write path, which
// answers a redelivery as a duplicate and a cancelled order as a conflict.
// Each event is acked after its own outcome is known, in whatever order
// the outcomes come.
type Reviewer struct {
	store ReviewStore
	opts  ReviewOptions
	log   *slog.Logger

	beforeAck func() // tests only: runs between a stored decision and its ack
}

// NewReviewer returns the review worker, or an error wrapping
// ErrInvalidOption when opts cannot work.
func NewReviewer(store ReviewStore, opts ReviewOptions, log *slog.Logger) (*Reviewer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Reviewer{store: store, opts: opts, log: log.With("worker", ReviewConsumer)}, nil
}

// Run reviews orders until ctx ends, retrying (with a pause) while
// JetStream is unreachable. When ctx ends, the reviews in flight are
// finished (each bounded by the store's timeout) and acked, and events
// fetched but not yet started are released at once for another node; Run
// returns after that.
func (r *Reviewer) Run(ctx context.Context) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	slots := make(chan struct{}, r.opts.Concurrency)
	for ctx.Err() == nil {
		err := r.run(ctx, slots, &inflight)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("review paused; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// run is one life of the fetch loop; slots bounds the reviews in flight
// (a review holds one from before its publish until its event is settled)
// and inflight counts them.
func (r *Reviewer) run(ctx context.Context, slots chan struct{}, inflight *sync.WaitGroup) error {
	filters, err := eventstore.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED}})
	if err != nil {
		return err
	}
	queue, err := r.store.CreateOrUpdateConsumers(ctx, jetstream.ConsumerConfig{
		Durable:       ReviewConsumer,
		Description:   "ordersd order review: approves or rejects created orders",
		FilterSubject: filters[0], // one status: one filter, as the consumer has always had
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.opts.AckWait,
		MaxAckPending: reviewMaxAckPending(r.opts.Concurrency),
		MaxDeliver:    r.opts.MaxDeliveries,
	})
	if err != nil {
		return err
	}
	r.log.Info("reviewing created orders", "limit_minor", r.opts.LimitMinor, "concurrency", r.opts.Concurrency, "partitions", len(queue))
	// One fetch loop per partition, all sharing the slots; the first to
	// fail ends them all (Run starts them again).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var loops sync.WaitGroup
	for _, qc := range queue {
		loops.Add(1)
		go func() {
			defer loops.Done()
			cancel(r.fetch(ctx, qc, slots, inflight))
		}()
	}
	loops.Wait()
	return context.Cause(ctx)
}

// fetch is the fetch loop of one partition's consumer, until ctx ends or
// a fetch fails.
func (r *Reviewer) fetch(ctx context.Context, qc eventstore.QueueConsumer, slots chan struct{}, inflight *sync.WaitGroup) error {
	// A batch is at most what can be in flight: an event waits for a slot
	// at most one batch long, well within its ack wait.
	batchSize := min(r.opts.Concurrency, 256)
	for {
		batch, err := qc.Consumer.Fetch(batchSize, jetstream.FetchMaxWait(maxFetchWait))
		if err != nil {
			return eventstore.Classify(err)
		}
		for msg := range batch.Messages() {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				release(msg)
				continue
			}
			if ctx.Err() != nil {
				<-slots
				release(msg)
				continue
			}
			inflight.Add(1)
			if !r.start(ctx, qc.Partition, msg, func() { <-slots; inflight.Done() }) {
				<-slots
				inflight.Done()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return eventstore.Classify(err)
		}
	}
}

// start decides one created order of partition p and publishes the decision. It returns
// false when the event was settled at once (nothing in flight); else a
// goroutine awaits the outcome, settles the event and calls done.
func (r *Reviewer) start(ctx context.Context, p eventstore.Partition, msg jetstream.Msg, done func()) bool {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return false
	}
	ev, err := p.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
	if err != nil {
		r.log.Warn("dropping a message that is not an order event", "stream", p.Stream(), "seq", meta.Sequence.Stream, "err", err)
		_ = msg.TermWithReason("not an order event")
		return false
	}
	order := ev.GetOrder()
	// The review continues the trace of the call that created the order.
	// It outlives ctx: a review in flight is finished on shutdown.
	spanCtx, span := telemetry.Tracer().Start(telemetry.Extract(context.WithoutCancel(ctx), msg.Headers()), ReviewConsumer,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("ordersd.order_id", order.GetOrderId()), attribute.Int64("ordersd.delivery_attempt", int64(meta.NumDelivered))))
	change := eventstore.Change{
		OrderID: order.GetOrderId(),
		// One request id per order: a redelivered event, on any node, is
		// answered as a duplicate instead of a second transition.
		RequestID:        ReviewConsumer,
		ExpectedRevision: ev.GetSequence(),
		To:               ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
	}
	if order.GetTotalMinor() > r.opts.LimitMinor {
		change.To = ordersv1.OrderStatus_ORDER_STATUS_REJECTED
		change.Reason = fmt.Sprintf("total %d %s exceeds the review limit of %d", order.GetTotalMinor(), order.GetCurrencyCode(), r.opts.LimitMinor)
	}
	span.SetAttributes(attribute.String("ordersd.decision", eventstore.EventType(change.To)))
	log := r.log.With("order_id", order.GetOrderId(), "attempt", meta.NumDelivered, "trace_id", telemetry.TraceID(spanCtx))
	pending, err := r.store.TransitionFrom(spanCtx, order, change)
	if err != nil {
		r.settle(spanCtx, span, log, msg, eventstore.Result{}, err)
		span.End()
		return false
	}
	go func() {
		defer done()
		defer span.End()
		res, err := pending.Wait(spanCtx)
		r.settle(spanCtx, span, log, msg, res, err)
	}()
	return true
}

// settle acks a created event whose review is stored (or known to be
// unneeded), and has JetStream deliver it again otherwise.
func (r *Reviewer) settle(ctx context.Context, span trace.Span, log *slog.Logger, msg jetstream.Msg, res eventstore.Result, err error) {
	switch {
	case err == nil:
		log.Debug("order reviewed", "status", res.Order.GetStatus().String(), "duplicate", res.Duplicate)
	case errors.Is(err, eventstore.ErrConflict), errors.Is(err, eventstore.ErrIllegalTransition),
		errors.Is(err, eventstore.ErrNotFound), errors.Is(err, eventstore.ErrRequestIDReused):
		// Someone else moved the order on (cancelled it, say): nothing to review.
		log.Info("order changed before review; skipped", "reason", err)
	default:
		// Not stored (or not known to be): let JetStream deliver it again.
		log.Warn("review failed; the event will be redelivered", "err", err)
		span.SetStatus(codes.Error, "review failed")
		attempt := uint64(1)
		if meta, err := msg.Metadata(); err == nil {
			attempt = meta.NumDelivered
		}
		_ = msg.NakWithDelay(reviewRetryDelay(attempt))
		return
	}
	if r.beforeAck != nil {
		r.beforeAck()
	}
	ackCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ackCtx); err != nil {
		log.Warn("review ack not confirmed; the event may be reviewed again (harmlessly)", "err", err)
	}
}
