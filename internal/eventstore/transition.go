package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Change is the input of Transition.
type Change struct {
	OrderID          string
	RequestID        string // optional idempotency key
	ExpectedRevision uint64 // 0: no check
	To               ordersv1.OrderStatus
	Reason           string // for rejected and cancelled
}

// Transition moves an order to c.To. It reads the order's last event,
// checks the expected revision and the state machine, and publishes the new
// state with an expected last sequence on the order's subjects: if anything else
// was stored for the order in between, JetStream refuses the write and the
// call fails with ErrConflict, so no transition is ever lost or doubled.
func (s *Store) Transition(ctx context.Context, c Change) (Result, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	part := st.of(s.layout.Of(c.OrderID))
	key, err := s.locate(ctx, part, c.OrderID)
	if err != nil {
		return Result{}, s.classify(err)
	}
	return s.transitionOf(ctx, part, key, c)
}

// transitionOf is Transition of the order with key k.
func (s *Store) transitionOf(ctx context.Context, stream partitionStreams, k OrderKey, c Change) (Result, error) {
	last, err := s.lastEvent(ctx, stream, k)
	if err != nil {
		return Result{}, s.classify(err)
	}
	current := last.event.GetOrder()
	if c.RequestID != "" && last.requestID == c.RequestID {
		if current.GetStatus() == c.To {
			return Result{Order: current, Duplicate: true}, nil
		}
		return Result{}, fmt.Errorf("%w: %q made order %s %s", ErrRequestIDReused, c.RequestID, c.OrderID, statusName(current.GetStatus()))
	}
	if c.ExpectedRevision != 0 && c.ExpectedRevision != current.GetRevision() {
		return s.retriedOr(ctx, stream, k, c, &ConflictError{Expected: c.ExpectedRevision, Actual: current.GetRevision()})
	}
	if !CanTransition(current.GetStatus(), c.To) {
		return s.retriedOr(ctx, stream, k, c, &TransitionError{From: current.GetStatus(), To: c.To})
	}

	next := proto.Clone(current).(*ordersv1.Order)
	next.Status = c.To
	next.Reason = c.Reason
	next.UpdateTime = timestamppb.New(s.now())
	msg, err := s.layout.EncodeEvent(next, c.RequestID)
	if err != nil {
		return Result{}, err
	}
	ack, err := s.publish(ctx, msg, s.layout.ExpectRevision(k, current.GetRevision()))
	switch {
	case IsWrongLastSequence(err):
		return s.retriedOr(ctx, stream, k, c, &ConflictError{Expected: current.GetRevision()})
	case err != nil:
		return Result{}, s.classify(err)
	case ack.Duplicate:
		return s.duplicateAt(ctx, stream, ack.Sequence, c.RequestID, c.OrderID)
	}
	next.Revision = ack.Sequence
	return Result{Order: next}, nil
}

// retriedOr answers a write that cannot be applied. If the request id
// already stored the wanted event, the write is a retry and gets its original
// result; otherwise the write fails with failure. Since an order enters each
// status at most once, the only event a retry can have stored is the last one
// on ORDERS.<event>.<customer_id>.<id>: one read, however long ago the
// original was.
func (s *Store) retriedOr(ctx context.Context, stream partitionStreams, k OrderKey, c Change, failure error) (Result, error) {
	if c.RequestID != "" {
		prior, ok, err := s.eventWithRequest(ctx, stream, c.To, k, c.RequestID)
		if err != nil {
			return Result{}, s.classify(err)
		}
		if ok {
			return prior, nil
		}
	}
	return Result{}, failure
}

// eventWithRequest looks for the order's event of the given status and
// reports whether request id requestID stored it.
func (s *Store) eventWithRequest(ctx context.Context, stream partitionStreams, status ordersv1.OrderStatus, k OrderKey, requestID string) (Result, bool, error) {
	if requestID == "" {
		return Result{}, false, nil
	}
	subject, err := stream.EventSubject(status, k)
	if err != nil {
		return Result{}, false, err
	}
	raw, err := stream.events.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	ev, err := stream.decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
	if AsUnreadable(err) != nil {
		// Another publisher's message, since repaired: not this request's.
		s.unreadable.Note(err)
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if ev.requestID != requestID {
		return Result{}, false, nil
	}
	return Result{Order: ev.event.GetOrder(), Duplicate: true}, true, nil
}

// duplicateAt answers a publish that JetStream acknowledged as a duplicate
// of the event at seq. The event must belong to the same request and, when
// the caller named one, the same order.
func (s *Store) duplicateAt(ctx context.Context, stream partitionStreams, seq uint64, requestID, orderID string) (Result, error) {
	raw, err := stream.events.GetMsg(ctx, seq)
	if err != nil {
		return Result{}, s.classify(err)
	}
	ev, err := stream.decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
	if err != nil {
		return Result{}, err
	}
	order := ev.event.GetOrder()
	if ev.requestID != requestID || (orderID != "" && order.GetOrderId() != orderID) {
		return Result{}, fmt.Errorf("%w: %q belongs to order %s", ErrRequestIDReused, requestID, order.GetOrderId())
	}
	return Result{Order: order, Duplicate: true}, nil
}

// lastEvent reads the last event of an order.
