package eventstore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersd/ordersd/internal/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publish sends msg and waits for JetStream's ack. It goes through the
// asynchronous publisher: the acks of every concurrent call arrive on one
// shared subscription and the writes of concurrent calls are coalesced,
// which under load costs less than one request-reply per publish.
func (s *Store) publish(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return s.publishThen(ctx, msg, func() {}, opts...)
}

// publishThen is publish that calls sent once msg is handed to the
// connection (or could not be), before the ack: messages handed over in
// turn are stored in that order.
func (s *Store) publishThen(ctx context.Context, msg *nats.Msg, sent func(), opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p := s.startPublish(ctx, msg)
	future, err := s.sendAsync(msg, opts...)
	sent()
	if err == nil {
		var ack *jetstream.PubAck
		ack, err = s.awaitAck(ctx, future)
		if err == nil {
			p.end(ack, nil)
			return ack, nil
		}
	}
	p.end(nil, err)
	return nil, err
}

// publishing is one publish being traced and measured.
type publishing struct {
	store *Store
	msg   *nats.Msg
	start time.Time
	span  trace.Span
}

// startPublish opens the publish's producer span and writes its trace
// context into the message, so whoever reads the event continues the
// trace.
func (s *Store) startPublish(ctx context.Context, msg *nats.Msg) publishing {
	ctx, span := telemetry.Tracer().Start(ctx, "publish "+msg.Subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject)))
	telemetry.Inject(ctx, msg.Header)
	return publishing{store: s, msg: msg, start: time.Now(), span: span}
}

// end records the publish's outcome: latency or failure reason, and the
// stream sequence it got.
func (p publishing) end(ack *jetstream.PubAck, err error) {
	p.store.metrics.Published(p.msg.Header.Get(HeaderEventType), time.Since(p.start), failureReason(err))
	if err != nil {
		p.span.RecordError(err)
		p.span.SetStatus(codes.Error, failureReason(err))
	} else if ack != nil {
		p.span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)), attribute.Bool("ordersd.duplicate", ack.Duplicate))
	}
	p.span.End()
}

// failureReason names a publish failure for metrics ("" when none).
func failureReason(err error) string {
	switch {
	case err == nil:
		return ""
	case IsWrongLastSequence(err):
		return "wrong_last_sequence"
	}
	switch err := Classify(err); {
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrResourceExhausted):
		return "resource_exhausted"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "other"
	}
}

// sendAsync publishes msg without waiting for JetStream's answer.
func (s *Store) sendAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	future, err := s.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		s.lostAcks.publishFailed(err)
	}
	return future, err
}

// awaitAck waits for the answer to an asynchronous publish, or ctx; a
// publish left waiting is noted, in case its answer never comes.
func (s *Store) awaitAck(ctx context.Context, future jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-future.Ok():
		return ack, nil
	case err := <-future.Err():
		return nil, err
	case <-ctx.Done():
		s.lostAcks.abandon(future)
		return nil, ctx.Err()
	}
}

// asyncPublish is an event published without waiting for JetStream's
// answer: the stream it went to (for the reads that settle it), its trace
// and measurement, and the answer to come.
type asyncPublish struct {
	store      *Store
	stream     partitionStreams
	publishing publishing
	future     jetstream.PubAckFuture
}

// publishAsync checks that the stream is there, then publishes msg, the
// event of order k, expecting the order's last event at revision. Many can
// be in flight at once over one connection.
func (s *Store) publishAsync(ctx context.Context, msg *nats.Msg, k OrderKey, revision uint64) (asyncPublish, error) {
	_, cancel, st, err := s.begin(ctx)
	if err != nil {
		return asyncPublish{}, err
	}
	cancel() // the stream handle outlives the check; the publish has its own bounds
	p := s.startPublish(ctx, msg)
	future, err := s.sendAsync(msg, s.layout.ExpectRevision(k, revision))
	if err != nil {
		p.end(nil, err)
		return asyncPublish{}, s.classify(err)
	}
	return asyncPublish{store: s, stream: st.of(s.layout.Of(k.OrderID)), publishing: p, future: future}, nil
}

// await waits for JetStream's answer, or the end of ctx, and ends the
// publish's trace and measurement.
func (a asyncPublish) await(ctx context.Context) (*jetstream.PubAck, error) {
	ack, err := a.store.awaitAck(ctx, a.future)
	a.publishing.end(ack, err)
	return ack, err
}
