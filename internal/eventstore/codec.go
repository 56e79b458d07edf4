package eventstore

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Headers every order event carries.
const (
	// HeaderContentType names the payload's encoding and message type, so a
	// consumer in any language knows how to read it.
	HeaderContentType = "Content-Type"
	// HeaderEventType repeats the <event> subject token (created, approved, ...).
	HeaderEventType = "Ordersd-Event-Type"
	// HeaderRequestID holds the request id (AIP-155) of the write that stored
	// the event; retries are recognised by it after the duplicate window.
	HeaderRequestID = "Ordersd-Request-Id"

	// ContentTypeOrder is the payload type of every event.
	ContentTypeOrder = "application/protobuf; proto=orders.v1.Order"
)

// EncodeEvent builds the message that stores order (its state after the
// event) on its event subject, with the event's headers and, for a write
// with a request id, its Nats-Msg-Id. order.Revision is not stored: it is
// the message's own stream sequence, known only once stored. Publish it
// with ExpectRevision. The benchmark's direct client uses it too, so both
// sides store the very same messages.
func EncodeEvent(order *ordersv1.Order, requestID string) (*nats.Msg, error) {
	return Layout{}.EncodeEvent(order, requestID)
}

// EncodeEvent is EncodeEvent in layout l: on the event subject of the
// order's partition.
func (l Layout) EncodeEvent(order *ordersv1.Order, requestID string) (*nats.Msg, error) {
	subject, err := l.Of(order.GetOrderId()).EventSubject(order.GetStatus(), KeyOf(order))
	if err != nil {
		return nil, err
	}
	// The revision is not stored; it is cleared for the marshalling only.
	revision := order.Revision
	order.Revision = 0
	data, err := proto.Marshal(order)
	order.Revision = revision
	if err != nil {
		return nil, fmt.Errorf("encode order %s: %w", order.GetOrderId(), err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderContentType, ContentTypeOrder)
	msg.Header.Set(HeaderEventType, EventType(order.GetStatus()))
	if requestID != "" {
		msg.Header.Set(HeaderRequestID, requestID)
		msg.Header.Set(nats.MsgIdHdr, msgID(order.GetStatus(), order.GetOrderId(), requestID))
	}
	return msg, nil
}

// msgID is the Nats-Msg-Id of a write. Creates are keyed by request id
// alone, so that a retried create recognises its first attempt even when the
// server made up a new order id for it; transitions are keyed per order and
// event so that ids of different orders never collide.
func msgID(status ordersv1.OrderStatus, orderID, requestID string) string {
	if status == ordersv1.OrderStatus_ORDER_STATUS_CREATED {
		return "created:" + requestID
	}
	return EventType(status) + ":" + orderID + ":" + requestID
}

// ExpectRevision makes the publish of an order's event fail unless the
// order's last event is at stream sequence revision (0: the order has no
// event yet): the per-order concurrency check of every write.
func ExpectRevision(k OrderKey, revision uint64) jetstream.PublishOpt {
	return Layout{}.ExpectRevision(k, revision)
}

// ExpectRevision is ExpectRevision in layout l: a revision is a sequence
// of the order's partition.
func (l Layout) ExpectRevision(k OrderKey, revision uint64) jetstream.PublishOpt {
	filter, _ := l.Of(k.OrderID).OrderSubjects(k) // the caller encoded the event, which checked the key
	return jetstream.WithExpectLastSequenceForSubject(revision, filter)
}

// storedEvent is an event read back from the stream, with the request id
// that stored it.
type storedEvent struct {
	event     *ordersv1.OrderEvent
	requestID string
}

// DecodeEvent reads a stored message back into an OrderEvent, checking
// that its subject, headers and payload agree. Messages that other
// publishers put on ORDERS.> fail with an *UnreadableError (it matches
// ErrCorruptEvent) instead of being taken for orders. It reads layout 2's
// stream; Partition.DecodeEvent reads any partition's.
func DecodeEvent(subject string, header nats.Header, data []byte, seq uint64, stored time.Time) (*ordersv1.OrderEvent, error) {
	return Partition{}.DecodeEvent(subject, header, data, seq, stored)
}

// DecodeEvent is DecodeEvent of a message stored in partition p.
func (p Partition) DecodeEvent(subject string, header nats.Header, data []byte, seq uint64, stored time.Time) (*ordersv1.OrderEvent, error) {
	ev, err := p.decodeEvent(subject, header, data, seq, stored)
	return ev.event, err
}

// decodeEvent is DecodeEvent that also returns the request id.
func (p Partition) decodeEvent(subject string, header nats.Header, data []byte, seq uint64, stored time.Time) (storedEvent, error) {
	status, key, ok := p.parseSubject(subject)
	if !ok {
		return storedEvent{}, p.unreadable(subject, seq, "the subject is not %s", p.subjectForm())
	}
	// The headers are checked when present: ordersd writes both, and a
	// message that names another content type or event says it is not one
	// of ordersd's events.
	if ct := header.Get(HeaderContentType); ct != "" && ct != ContentTypeOrder {
		return storedEvent{}, p.unreadable(subject, seq, "its %s is %q, not %q", HeaderContentType, ct, ContentTypeOrder)
	}
	if et := header.Get(HeaderEventType); et != "" && et != EventType(status) {
		return storedEvent{}, p.unreadable(subject, seq, "its %s header %q does not match the subject's event %q", HeaderEventType, et, EventType(status))
	}
	order := &ordersv1.Order{}
	if err := proto.Unmarshal(data, order); err != nil {
		return storedEvent{}, p.unreadable(subject, seq, "the payload is not an orders.v1.Order in protobuf (%v)", err)
	}
	if order.GetStatus() != status || KeyOf(order) != key {
		return storedEvent{}, p.unreadable(subject, seq, "the payload (customer %q, order %q, status %v) does not match the subject",
			order.GetCustomerId(), order.GetOrderId(), order.GetStatus())
	}
	order.Revision = seq
	return storedEvent{
		event: &ordersv1.OrderEvent{
			Sequence:    seq,
			PublishTime: timestamppb.New(stored),
			Order:       order,
		},
		requestID: header.Get(HeaderRequestID),
	}, nil
}
