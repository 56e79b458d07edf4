package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// ReviewOptions configure the order-review worker.
type ReviewOptions struct {
	// LimitMinor is the largest total_minor approved; larger orders are
	// rejected. It must not be negative; 0 approves only orders of total 0.
	LimitMinor int64
	// AckWait is how long a created event may be in review before it is
	// delivered again (to this node or another): DefaultAckWait when 0,
	// else at least minReviewAckWait.
	AckWait time.Duration
}

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
	return o, nil
}

// ReviewStore is what the review worker needs of the event store
// (*eventstore.Store): its durable consumer, and the same transition path
// the RPCs use.
type ReviewStore interface {
	CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	Transition(ctx context.Context, c eventstore.Change) (eventstore.Result, error)
}

// Reviewer is the built-in order-review worker (the seed's pull consumer):
// it takes created orders from the durable consumer order-review as a work
// queue shared by every ordersd node, approves those whose total is within
// the limit and rejects the rest, and acks each event only once its
// transition is stored.
type Reviewer struct {
	store ReviewStore
	opts  ReviewOptions
	log   *slog.Logger
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
// JetStream is unreachable. Events fetched but not reviewed when ctx ends
// are released at once for another node.
func (r *Reviewer) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.run(ctx)
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

func (r *Reviewer) run(ctx context.Context) error {
	filters, err := eventstore.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED}})
	if err != nil {
		return err
	}
	cons, err := r.store.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ReviewConsumer,
		Description:   "ordersd order review: approves or rejects created orders",
		FilterSubject: filters[0], // one status: one filter, as the consumer has always had
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.opts.AckWait,
		MaxAckPending: 1000,
	})
	if err != nil {
		return err
	}
	r.log.Info("reviewing created orders", "limit_minor", r.opts.LimitMinor)
	for {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(maxFetchWait))
		if err != nil {
			return eventstore.Classify(err)
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				release(msg)
				continue
			}
			r.review(ctx, msg)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return eventstore.Classify(err)
		}
	}
}

// review decides one created order and settles its event.
func (r *Reviewer) review(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	ev, err := eventstore.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
	if err != nil {
		r.log.Warn("dropping a message that is not an order event", "seq", meta.Sequence.Stream, "err", err)
		_ = msg.TermWithReason("not an order event")
		return
	}
	order := ev.GetOrder()
	// The review continues the trace of the call that created the order.
	ctx, span := telemetry.Tracer().Start(telemetry.Extract(ctx, msg.Headers()), ReviewConsumer,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("ordersd.order_id", order.GetOrderId()), attribute.Int64("ordersd.delivery_attempt", int64(meta.NumDelivered))))
	defer span.End()
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
	log := r.log.With("order_id", order.GetOrderId(), "attempt", meta.NumDelivered, "trace_id", telemetry.TraceID(ctx))
	res, err := r.store.Transition(ctx, change)
	switch {
	case err == nil:
		log.Info("order reviewed", "status", res.Order.GetStatus().String(), "duplicate", res.Duplicate)
	case errors.Is(err, eventstore.ErrConflict), errors.Is(err, eventstore.ErrIllegalTransition),
		errors.Is(err, eventstore.ErrNotFound), errors.Is(err, eventstore.ErrRequestIDReused):
		// Someone else moved the order on (cancelled it, say): nothing to review.
		log.Info("order changed before review; skipped", "reason", err)
	default:
		// Not stored (or not known to be): let JetStream deliver it again.
		log.Warn("review failed; the event will be redelivered", "err", err)
		span.SetStatus(codes.Error, "review failed")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ackCtx); err != nil {
		log.Warn("review ack not confirmed; the event may be reviewed again (harmlessly)", "err", err)
	}
}
