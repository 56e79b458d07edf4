package eventstore

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// PendingTransition is a transition whose event is on its way to
// JetStream (see TransitionFrom).
type PendingTransition struct {
	store     *Store
	change    Change
	next      *ordersv1.Order
	published asyncPublish
}

// TransitionFrom is Transition for a caller that already holds the order's
// state at a known revision (known.Revision), as a consumer of the order's
// events does: the payload of an event is the order's state at the event's
// stream sequence. It skips Transition's read, builds the next event from
// known and publishes it asynchronously with known.Revision as the
// expected last sequence on the order's subjects, so that many transitions can be
// in flight at once over one connection.
//
// c.ExpectedRevision, when set, must be known.Revision. A change the state
// machine forbids from known's status fails at once with
// ErrIllegalTransition. Wait gives the result Transition would have given.
func (s *Store) TransitionFrom(ctx context.Context, known *ordersv1.Order, c Change) (*PendingTransition, error) {
	switch {
	case known.GetOrderId() != c.OrderID:
		return nil, fmt.Errorf("%w: the known state is of order %q, the change of %q", ErrInvalidArgument, known.GetOrderId(), c.OrderID)
	case known.GetRevision() == 0:
		return nil, fmt.Errorf("%w: the known state of order %s has no revision", ErrInvalidArgument, c.OrderID)
	case c.ExpectedRevision != 0 && c.ExpectedRevision != known.GetRevision():
		return nil, fmt.Errorf("%w: expected revision %d, known state at %d", ErrInvalidArgument, c.ExpectedRevision, known.GetRevision())
	case !CanTransition(known.GetStatus(), c.To):
		return nil, &TransitionError{From: known.GetStatus(), To: c.To}
	}
	c.ExpectedRevision = known.GetRevision()
	next := proto.Clone(known).(*ordersv1.Order)
	next.Status = c.To
	next.Reason = c.Reason
	next.UpdateTime = timestamppb.New(s.now())
	msg, err := s.layout.EncodeEvent(next, c.RequestID)
	if err != nil {
		return nil, err
	}
	published, err := s.publishAsync(ctx, msg, KeyOf(known), known.GetRevision())
	if err != nil {
		return nil, err
	}
	return &PendingTransition{store: s, change: c, next: next, published: published}, nil
}

// Wait returns the transition's result once JetStream has answered, or
// ErrUnavailable if it does not within the store's timeout (the outcome is
// then unknown: retry with the same request id). When the order moved on
// since the known revision, the change is retried by Transition, which
// recognises a retry of the same request (a duplicate) and otherwise fails
// with ErrConflict or ErrIllegalTransition.
func (p *PendingTransition) Wait(ctx context.Context) (Result, error) {
	s := p.store
	waitCtx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	ack, err := p.published.await(waitCtx)
	switch {
	case IsWrongLastSequence(err):
		return s.Transition(ctx, p.change)
	case err != nil:
		return Result{}, s.classify(err)
	case ack.Duplicate:
		return s.duplicateAt(waitCtx, p.published.stream, ack.Sequence, p.change.RequestID, p.change.OrderID)
	}
	p.next.Revision = ack.Sequence
	return Result{Order: p.next}, nil
}
