package eventstore

import (
	"errors"
	"fmt"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Sentinel errors. Callers compare with errors.Is; the gRPC layer maps each
// to one status code.
var (
	// ErrInvalidArgument: a value that must never reach a subject or the
	// stream (callers validate first; this is the last line of defence).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the order has no events.
	ErrNotFound = errors.New("order not found")
	// ErrAlreadyExists: CreateOrder with an order id that another request took.
	ErrAlreadyExists = errors.New("order already exists")
	// ErrConflict: the order changed between read and write, or its revision
	// is not the expected one. Safe to re-read and retry.
	ErrConflict = errors.New("order changed concurrently")
	// ErrIllegalTransition: the order's status does not allow the change.
	ErrIllegalTransition = errors.New("illegal transition")
	// ErrRequestIDReused: the request id was already used for a different request.
	ErrRequestIDReused = errors.New("request id already used for a different request")
	// ErrUnavailable: JetStream could not be reached or did not answer in
	// time. For a write the outcome is unknown: retry with the same request id.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrLayoutOutdated: the stream ORDERS holds events in an older subject
	// layout; `ordersd migrate` rewrites it. Nothing is served until then.
	ErrLayoutOutdated = errors.New("stream layout outdated")
	// ErrCorruptEvent: a stored message is not a readable order event.
	ErrCorruptEvent = errors.New("unreadable order event")
	// ErrResourceExhausted: JetStream refused the write for lack of room
	// (storage limits, message too large).
	ErrResourceExhausted = errors.New("jetstream resources exhausted")
	// ErrConsumerNotFound: no durable consumer of the name.
	ErrConsumerNotFound = errors.New("consumer not found")
	// ErrTooManyConsumers: creating the consumer would exceed the cap on
	// durable consumers of ORDERS.
	ErrTooManyConsumers = errors.New("too many durable consumers")
	// ErrInvalidOption is wrapped by the error of New when an Option is
	// out of range.
	ErrInvalidOption = errors.New("eventstore: invalid option")
	// ErrNothingToRestore: Repair found no readable event of the order, so
	// there is no state to restore.
	ErrNothingToRestore = errors.New("no readable event of the order to restore")
)

// TransitionError describes an illegal transition; it matches ErrIllegalTransition.
type TransitionError struct {
	From, To ordersv1.OrderStatus
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("an order in status %s cannot become %s", statusName(e.From), statusName(e.To))
}

// Is makes errors.Is(err, ErrIllegalTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// ConflictError describes a failed concurrency check; it matches ErrConflict.
type ConflictError struct {
	Expected, Actual uint64 // Actual is 0 when unknown
}

func (e *ConflictError) Error() string {
	if e.Actual == 0 {
		return fmt.Sprintf("order changed concurrently: expected revision %d is no longer current", e.Expected)
	}
	return fmt.Sprintf("order revision is %d, not the expected %d", e.Actual, e.Expected)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// statusName is the short lower-case name of a status ("approved").
func statusName(s ordersv1.OrderStatus) string {
	if t := EventType(s); t != "" {
		return t
	}
	return s.String()
}
