package consumers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/telemetry"
)

// maxFetchWait bounds how long one fetch waits for events. It is also how
// late, at most, the fetch loop notices that its client went away, so it
// bounds how long fetched events wait to be released.
const maxFetchWait = time.Second

// ConsumeSpec is what a ConsumeOrders client asked for.
type ConsumeSpec struct {
	Consumer    string
	Filters     []string // subject filters; every event when empty
	MaxInFlight int
	Settings    ConsumerSettings
	AutoAck     bool
	Heartbeat   time.Duration
	// Raw: deliveries carry the stored bytes (Delivery.Raw) instead of a
	// decoded Event, for a sender that forwards them (StreamOrders).
	Raw bool
}

// Delivery is one message of a ConsumeOrders stream: an event, or a heartbeat.
type Delivery struct {
	Event      *ordersv1.OrderEvent
	Raw        eventstore.RawEvent // instead of Event when ConsumeSpec.Raw (Event may still be set for a redriven one)
	ID         uint64              // the stream's number for it: 1, 2, 3...
	Attempt    uint64
	NumPending uint64
	AckToken   string
	Heartbeat  bool
}

// WorkQueueStore is what WorkQueues needs of the event store
// (*eventstore.Store): the durable consumers of the stream, and the events
// that redriven dead letters point at.
type WorkQueueStore interface {
	EnsureConsumers(ctx context.Context, cfg jetstream.ConsumerConfig, maxDurables int) ([]eventstore.QueueConsumer, error)
	EventAt(ctx context.Context, p eventstore.Partition, seq uint64) (*ordersv1.OrderEvent, error)
	Epochs(ctx context.Context) ([]eventstore.Epoch, error)
}

// Redrives is what WorkQueues needs of the dead letters
// (*deadletters.Store): the consumer of each work queue's redriven dead
// letters.
type Redrives interface {
	RedriveConsumer(ctx context.Context, consumer string) (jetstream.Consumer, error)
}

// WorkQueueOptions bound the durable consumers ConsumeOrders creates.
type WorkQueueOptions struct {
	// InactiveThreshold is how long a consumer created by ConsumeOrders
	// may go without a client before JetStream deletes it; 0: never.
	InactiveThreshold time.Duration
	// MaxDurables caps the durable consumers of ORDERS (the reviewer's
	// included): ConsumeOrders creates no more; 0: no cap.
	MaxDurables int
}

// DefaultInactiveThreshold is the default of
// WorkQueueOptions.InactiveThreshold (--consumer-inactive-threshold): a
// consumer nobody read for a week is taken as abandoned.
const DefaultInactiveThreshold = 7 * 24 * time.Hour

// WorkQueues serves ConsumeOrders streams.
type WorkQueues struct {
	store    WorkQueueStore
	redrives Redrives
	nc       *nats.Conn
	tokens   *AckTokens
	log      *slog.Logger
	metrics  *metrics.Metrics
	opts     WorkQueueOptions
}

// NewWorkQueues returns WorkQueues on the store's stream, with the
// redriven dead letters of redrives; m may be nil.
func NewWorkQueues(store WorkQueueStore, redrives Redrives, nc *nats.Conn, tokens *AckTokens, log *slog.Logger, m *metrics.Metrics, o WorkQueueOptions) *WorkQueues {
	return &WorkQueues{store: store, redrives: redrives, nc: nc, tokens: tokens, log: log, metrics: m, opts: o}
}

// Consume binds to (or creates) the durable consumer and streams its
// events to send until ctx ends or send fails. It fetches no more events
// than the client's free credit; events fetched but not sent when the
// stream ends are released at once (NAK), so they go to another client
// right away instead of after their ack wait.
func (w *WorkQueues) Consume(ctx context.Context, spec ConsumeSpec, send func(Delivery) error) error {
	return w.consume(ctx, spec, nil, send, func(batch []Delivery) (int, error) {
		for i, d := range batch {
			if err := send(d); err != nil {
				return i, err
			}
		}
		return len(batch), nil
	})
}

// consume is Consume with deliveries sent in batches by sendBatch (which
// returns how many it sent), and, for a Session, its deliveries tracked.
func (w *WorkQueues) consume(ctx context.Context, spec ConsumeSpec, sess *Session, send func(Delivery) error, sendBatch func([]Delivery) (int, error)) error {
	spec.Settings.InactiveThreshold = w.opts.InactiveThreshold
	queue, err := beatingWhile(ctx, spec.Heartbeat, send, func(ctx context.Context) ([]eventstore.QueueConsumer, error) {
		return ensureConsumer(ctx, w.store, spec.Consumer, spec.Filters, spec.Settings, w.opts.MaxDurables) // bounded by --nats-timeout
	})
	if err != nil {
		return err
	}
	// The streams are known by now: this reads what ensureConsumer looked up.
	epochs, err := w.store.Epochs(ctx)
	if err != nil {
		return err
	}
	cfg := queue[0].Config // the same on every partition (ensureConsumer checked)
	held := newCredit(spec.MaxInFlight, func(delta int) { w.metrics.InFlight(spec.Consumer, delta) })
	if sess != nil {
		sess.start(held, ackDeadline(cfg, 1))
	}
	defer held.drop()
	if !spec.AutoAck {
		streams := make([]string, len(queue))
		for i, qc := range queue {
			streams[i] = qc.Partition.Stream()
		}
		subs, err := held.watchAcks(w.nc, streams, spec.Consumer, ackDeadline(cfg, 1))
		if err != nil {
			return eventstore.Classify(err)
		}
		defer func() {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
		}()
	}
	// One fetch loop per partition, sharing the client's credit and its
	// stream; the first (whose epoch redriven dead letters carry) also
	// delivers the redriven dead letters. The first loop to end ends them all.
	out := &sender{send: send, sendBatch: sendBatch, lastSend: time.Now()}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var loops sync.WaitGroup
	for i, qc := range queue {
		loop := &fetchLoop{w: w, spec: spec, part: qc.Partition, epoch: epochs[qc.Partition.Number], cfg: cfg, cons: qc.Consumer,
			held: held, out: out, sess: sess, redrives: i == 0, share: max(1, (spec.MaxInFlight+len(queue)-1)/len(queue))}
		loops.Add(1)
		go func() {
			defer loops.Done()
			cancel(loop.run(ctx))
		}()
	}
	loops.Wait()
	return context.Cause(ctx)
}

// sender is the one client stream the fetch loops of a ConsumeOrders
// stream share: one send at a time, deliveries numbered in send order.
type sender struct {
	mu   sync.Mutex
	send func(Delivery) error // heartbeats
	// sendBatch sends deliveries and returns how many it sent.
	sendBatch func([]Delivery) (int, error)
	lastID    uint64 // the last Delivery.ID given
	lastSend  time.Time
}

// heartbeatDue is when the next heartbeat is due.
func (s *sender) heartbeatDue(interval time.Duration) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSend.Add(interval)
}

// fetchLoop is the state of one ConsumeOrders stream on one partition.
type fetchLoop struct {
	w     *WorkQueues
	spec  ConsumeSpec
	part  eventstore.Partition
	epoch eventstore.Epoch // of the partition's stream, in every ack token
	cfg   jetstream.ConsumerConfig
	cons  jetstream.Consumer
	held  *credit
	out   *sender
	sess  *Session // nil for ConsumeOrders
	// redrives: this loop also delivers the queue's redriven dead letters.
	redrives bool
	share    int // the most credit it reserves at once: its part of the client's

	failures int // fetches in a row that failed for a passing reason
	redrive  redriveSource
}

func (l *fetchLoop) run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if !now.Before(l.out.heartbeatDue(l.spec.Heartbeat)) {
			if err := l.sendHeartbeat(); err != nil {
				return err
			}
		}
		free, nextExpiry := l.held.reserve(now, l.share)
		if free <= 0 {
			l.waitForCredit(ctx, now, nextExpiry)
			continue
		}
		if l.redrives {
			sent, err := l.deliverRedriven(ctx, now, free)
			if err != nil || sent > 0 {
				l.held.unreserve(free)
			}
			if err != nil {
				return err
			}
			if sent > 0 {
				continue // credit changed
			}
		}
		wait := min(maxFetchWait, l.spec.Heartbeat)
		batch, err := l.cons.Fetch(free, jetstream.FetchMaxWait(wait))
		if err == nil {
			var stop error
			_, stop, err = l.deliver(ctx, batch, l.prepare)
			if stop != nil {
				l.held.unreserve(free)
				return stop
			}
		}
		l.held.unreserve(free)
		if err = l.retryable(ctx, err); err != nil {
			return err
		}
	}
}

// maxFetchRetries is how many fetches in a row may fail for a passing
// reason before the stream ends with UNAVAILABLE.
const maxFetchRetries = 10

// retryable decides whether the loop may go on after err: yes for the
// passing failures of a consumer just created by another client, or one
// whose leader is moving (no responders, leadership change, its server
// shutting down), after a growing pause; no for anything else, or when
// they go on too long.
func (l *fetchLoop) retryable(ctx context.Context, err error) error {
	if err == nil {
		l.failures = 0
		return nil
	}
	passing := errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrConsumerLeadershipChanged) || errors.Is(err, jetstream.ErrServerShutdown) ||
		errors.Is(err, nats.ErrTimeout)
	if !passing || l.failures >= maxFetchRetries || ctx.Err() != nil {
		return eventstore.Classify(err)
	}
	l.failures++
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(l.failures) * 100 * time.Millisecond):
		return nil
	}
}

// waitForCredit sleeps until an ack frees credit, a held delivery expires,
// a heartbeat is due, or ctx ends.
func (l *fetchLoop) waitForCredit(ctx context.Context, now, nextExpiry time.Time) {
	freed := l.held.freed()
	until := l.out.heartbeatDue(l.spec.Heartbeat)
	if !nextExpiry.IsZero() && nextExpiry.Before(until) {
		until = nextExpiry
	}
	timer := time.NewTimer(until.Sub(now))
	defer timer.Stop()
	select {
	case <-freed:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// prepared is a fetched message made ready to send: decoded and signed.
type prepared struct {
	msg      jetstream.Msg
	delivery Delivery
	seq      heldKey
	ok       bool // false: not an order event (already settled)
}

// prepare decodes and signs one message; it runs beside the sends, so
// that the CPU work of one event overlaps the network work of another.
func (l *fetchLoop) prepare(msg jetstream.Msg) prepared {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return prepared{msg: msg}
	}
	var (
		ev  *ordersv1.OrderEvent
		raw eventstore.RawEvent
	)
	if l.spec.Raw {
		raw, err = l.part.CheckRawEvent(msg.Subject(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
	} else {
		ev, err = l.part.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
	}
	if err != nil {
		l.w.log.Warn("dropping a message that is not an order event", "consumer", l.spec.Consumer, "stream", l.part.Stream(), "seq", meta.Sequence.Stream, "err", err)
		_ = msg.TermWithReason("not an order event")
		return prepared{msg: msg}
	}
	p := prepared{msg: msg, seq: heldKey{stream: l.part.Stream(), seq: meta.Sequence.Stream}, ok: true,
		delivery: Delivery{Event: ev, Raw: raw, Attempt: meta.NumDelivered, NumPending: meta.NumPending}}
	if !l.spec.AutoAck {
		p.delivery.AckToken = l.w.tokens.SignIn(l.part, l.epoch, msg.Reply())
	}
	return p
}

// maxBatch bounds the deliveries sent together (one StreamOrders
// response): those ready when the first is, up to this many.
const maxBatch = 256

// deliver sends the events of one fetch, prepared by a helper goroutine,
// in batches of those ready together. Once the stream is broken (ctx
// ended or a send failed) it releases the rest with a NAK. It returns how
// many it sent, the error that broke the stream, and the fetch's own
// error (unclassified: the loop tells passing failures, such as a leader
// change, from others).
func (l *fetchLoop) deliver(ctx context.Context, batch jetstream.MessageBatch, prepare func(jetstream.Msg) prepared) (int, error, error) {
	ready := make(chan prepared, 64)
	go func() {
		defer close(ready)
		for msg := range batch.Messages() {
			ready <- prepare(msg)
		}
	}()
	var (
		stop    error
		sent    int
		pending []prepared
	)
	for p := range ready {
		pending = append(pending[:0], p)
	gather:
		for len(pending) < maxBatch {
			select {
			case q, ok := <-ready:
				if !ok {
					break gather
				}
				pending = append(pending, q)
			default:
				break gather
			}
		}
		if stop == nil {
			stop = ctx.Err()
		}
		n, err := l.sendPrepared(ctx, pending, stop)
		sent += n
		if stop == nil {
			stop = err
		}
	}
	if stop != nil {
		return sent, stop, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
		return sent, nil, err
	}
	return sent, nil, nil
}

// sendPrepared sends one batch, or releases it when the stream is already
// broken (stop). Deliveries the send did not take are released at once:
// the client may not have them, so they go to another client now.
func (l *fetchLoop) sendPrepared(ctx context.Context, batch []prepared, stop error) (int, error) {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	out := make([]Delivery, 0, len(batch))
	kept := batch[:0]
	for _, p := range batch {
		if !p.ok {
			continue
		}
		if stop != nil {
			release(p.msg)
			continue
		}
		l.out.lastID++
		p.delivery.ID = l.out.lastID
		if !l.spec.AutoAck {
			// Held before the send, so an ack that overtakes it still counts.
			l.held.hold(p.seq, time.Now().Add(ackDeadline(l.cfg, p.delivery.Attempt)))
			if l.sess != nil {
				l.sess.track(p.delivery.ID, p.seq, p.msg.Reply())
			}
		}
		kept = append(kept, p)
		out = append(out, p.delivery)
	}
	if len(out) == 0 {
		return 0, nil
	}
	n, err := l.sendTraced(ctx, kept, out)
	l.out.lastSend = time.Now()
	for _, p := range kept[n:] {
		l.held.release(p.seq)
		release(p.msg)
	}
	for _, p := range kept[:n] {
		l.w.metrics.Delivered(l.spec.Consumer, p.delivery.Attempt)
		if l.spec.AutoAck {
			_ = p.msg.Ack()
		}
	}
	return n, err
}

// sendTraced sends a batch, each delivery inside a span that continues
// the trace of the call that stored its event, linked to the consuming
// call.
func (l *fetchLoop) sendTraced(ctx context.Context, batch []prepared, out []Delivery) (int, error) {
	spans := make([]trace.Span, len(batch))
	for i, p := range batch {
		orderID := p.delivery.Raw.OrderID
		if p.delivery.Event != nil {
			orderID = p.delivery.Event.GetOrder().GetOrderId()
		}
		_, spans[i] = telemetry.Tracer().Start(telemetry.Extract(context.Background(), p.msg.Headers()), "ConsumeOrders deliver",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithLinks(trace.LinkFromContext(ctx)),
			trace.WithAttributes(attribute.String("ordersd.consumer", l.spec.Consumer),
				attribute.String("ordersd.order_id", orderID),
				attribute.Int64("ordersd.delivery_attempt", int64(p.delivery.Attempt))))
	}
	defer func() {
		for _, span := range spans {
			span.End()
		}
	}()
	return l.out.sendBatch(out)
}

// beatingWhile runs setUp while sending a heartbeat every interval: a
// set-up that waits on JetStream (a consumer's leader being elected after
// a node died) must not look like a stalled stream to the client. Only the
// calling goroutine sends.
func beatingWhile[T any](ctx context.Context, interval time.Duration, send func(Delivery) error, setUp func(context.Context) (T, error)) (T, error) {
	if interval <= 0 {
		return setUp(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := setUp(ctx)
		done <- result{v, err}
	}()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case r := <-done:
			return r.v, r.err
		case <-ticker.C:
			if err := send(Delivery{Heartbeat: true}); err != nil {
				cancel()
				<-done
				var zero T
				return zero, err
			}
		}
	}
}

func (l *fetchLoop) sendHeartbeat() error {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	if time.Since(l.out.lastSend) < l.spec.Heartbeat {
		return nil // another partition's loop sent one, or deliveries
	}
	if err := l.out.send(Delivery{Heartbeat: true}); err != nil {
		return err
	}
	l.out.lastSend = time.Now()
	return nil
}

// ackDeadline is how long JetStream waits for the ack of a delivery's
// attempt-th delivery before redelivering it.
func ackDeadline(cfg jetstream.ConsumerConfig, attempt uint64) time.Duration {
	if n := len(cfg.BackOff); n > 0 {
		return cfg.BackOff[min(max(int(attempt), 1), n)-1]
	}
	return cfg.AckWait
}
