package eventstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/metrics"
)

// UnreadableError is a stored message that is not a readable order event:
// another publisher's message on an order's subject, or one whose subject,
// headers and payload disagree. It matches ErrCorruptEvent. Reads name it
// by stream, sequence and subject, and the order its subject names, so an
// operator can find it (QueueService.RepairOrder restores the order).
type UnreadableError struct {
	Stream   string
	Sequence uint64
	Subject  string
	// OrderID and CustomerID are what the subject names (empty when the
	// subject is not an event subject of the layout).
	OrderID, CustomerID string
	// Reason says why the message is not an order event.
	Reason string
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("unreadable order event: stream %s sequence %d (subject %q): %s", e.Stream, e.Sequence, e.Subject, e.Reason)
}

// Is makes errors.Is(err, ErrCorruptEvent) true.
func (e *UnreadableError) Is(target error) bool { return target == ErrCorruptEvent }

// unreadable builds the UnreadableError of a message of partition p on
// subject at seq.
func (p Partition) unreadable(subject string, seq uint64, format string, args ...any) *UnreadableError {
	e := &UnreadableError{Stream: p.Stream(), Sequence: seq, Subject: subject, Reason: fmt.Sprintf(format, args...)}
	if _, key, ok := p.parseSubject(subject); ok {
		e.OrderID, e.CustomerID = key.OrderID, key.CustomerID
	}
	return e
}

// AsUnreadable returns the UnreadableError in err's chain, or nil.
func AsUnreadable(err error) *UnreadableError {
	var u *UnreadableError
	if errors.As(err, &u) {
		return u
	}
	return nil
}

// maxRememberedUnreadable bounds how many unreadable messages a node
// remembers having reported. Past it, each further one is counted and
// logged every time it is met: a flood of foreign messages is loud rather
// than a cause of unbounded memory.
const maxRememberedUnreadable = 100_000

// Unreadables reports each unreadable message once per process: one WARN
// line naming it, and one count in ordersd_unreadable_events_total for its
// stream, however many reads meet it. It is safe for concurrent use.
type Unreadables struct {
	log     *slog.Logger
	metrics *metrics.Metrics

	mu   sync.Mutex // protects seen
	seen map[unreadableKey]struct{}
}

type unreadableKey struct {
	stream string
	seq    uint64
}

// NewUnreadables returns an Unreadables that logs to log and counts in m
// (none when nil).
func NewUnreadables(log *slog.Logger, m *metrics.Metrics) *Unreadables {
	return &Unreadables{log: log, metrics: m, seen: make(map[unreadableKey]struct{})}
}

// Note reports the UnreadableError in err's chain, the first time this
// process meets its message; it does nothing for any other error.
func (u *Unreadables) Note(err error) {
	e := AsUnreadable(err)
	if u == nil || e == nil {
		return
	}
	key := unreadableKey{stream: e.Stream, seq: e.Sequence}
	u.mu.Lock()
	_, seen := u.seen[key]
	if !seen && len(u.seen) < maxRememberedUnreadable {
		u.seen[key] = struct{}{}
	}
	u.mu.Unlock()
	if seen {
		return
	}
	u.metrics.UnreadableEvent(e.Stream)
	u.log.Warn("a stored message is not an order event; reads skip or report it (see QueueService.RepairOrder)",
		"stream", e.Stream, "sequence", e.Sequence, "subject", e.Subject, "order_id", e.OrderID, "reason", e.Reason)
}

// Proto is e as the API reports it.
func (e *UnreadableError) Proto() *ordersv1.UnreadableEvent {
	return &ordersv1.UnreadableEvent{Stream: e.Stream, Sequence: e.Sequence, Subject: e.Subject,
		OrderId: e.OrderID, CustomerId: e.CustomerID, Reason: e.Reason}
}
