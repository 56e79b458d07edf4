package eventstore

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// RawEvent is a stored event that was checked but not decoded: its order
// stays in the bytes it was stored as, so it can be forwarded to a client
// without an unmarshal and a marshal (StreamOrders).
type RawEvent struct {
	Seq     uint64
	Stored  time.Time
	OrderID string
	Order   []byte // the stored payload: an orders.v1.Order without its revision
}

// The field numbers CheckRawEvent and AppendOrderEvent rely on, read from
// the generated descriptors so that proto/ stays their one source.
var (
	orderIDField    = FieldNumber(&ordersv1.Order{}, "order_id")
	customerIDField = FieldNumber(&ordersv1.Order{}, "customer_id")
	statusField     = FieldNumber(&ordersv1.Order{}, "status")
	revisionField   = FieldNumber(&ordersv1.Order{}, "revision")

	eventSequenceField    = FieldNumber(&ordersv1.OrderEvent{}, "sequence")
	eventPublishTimeField = FieldNumber(&ordersv1.OrderEvent{}, "publish_time")
	eventOrderField       = FieldNumber(&ordersv1.OrderEvent{}, "order")

	timestampSecondsField = FieldNumber(&timestamppb.Timestamp{}, "seconds")
	timestampNanosField   = FieldNumber(&timestamppb.Timestamp{}, "nanos")
)

// FieldNumber is the number of m's field name, for code that writes or
// reads the wire form by hand; it panics at start-up if the field is gone
// from the API.
func FieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic(fmt.Sprintf("%s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return f.Number()
}

// CheckRawEvent does what DecodeEvent does, without decoding: it checks
// that the payload is well-formed protobuf at its top level and that its
// order id, customer id and status agree with the subject. A message that
// fails is an *UnreadableError, as with DecodeEvent.
func CheckRawEvent(subject string, data []byte, seq uint64, stored time.Time) (RawEvent, error) {
	return Partition{}.CheckRawEvent(subject, data, seq, stored)
}

// CheckRawEvent is CheckRawEvent of a message stored in partition p.
func (p Partition) CheckRawEvent(subject string, data []byte, seq uint64, stored time.Time) (RawEvent, error) {
	status, key, ok := p.parseSubject(subject)
	if !ok {
		return RawEvent{}, p.unreadable(subject, seq, "the subject is not %s", p.subjectForm())
	}
	var (
		got    OrderKey
		gotSt  ordersv1.OrderStatus
		b      = data
		failed bool
	)
	for len(b) > 0 && !failed {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			failed = true
			break
		}
		b = b[n:]
		switch {
		case num == orderIDField && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			got.OrderID, n = string(v), m
		case num == customerIDField && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			got.CustomerID, n = string(v), m
		case num == statusField && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			gotSt, n = ordersv1.OrderStatus(int32(v)), m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			failed = true
			break
		}
		b = b[n:]
	}
	if failed {
		return RawEvent{}, p.unreadable(subject, seq, "the payload is not an orders.v1.Order in protobuf")
	}
	if gotSt != status || got != key {
		return RawEvent{}, p.unreadable(subject, seq, "the payload (customer %q, order %q, status %v) does not match the subject",
			got.CustomerID, got.OrderID, gotSt)
	}
	return RawEvent{Seq: seq, Stored: stored, OrderID: key.OrderID, Order: data}, nil
}

// AppendOrderEvent appends the wire form of the orders.v1.OrderEvent that
// DecodeEvent would return for e: the stored order bytes with the revision
// (the sequence) added as the order's last field, which is where a
// marshalled Order has it.
func (e RawEvent) AppendOrderEvent(b []byte) []byte {
	b = protowire.AppendTag(b, eventSequenceField, protowire.VarintType)
	b = protowire.AppendVarint(b, e.Seq)
	var ts []byte
	if secs := e.Stored.Unix(); secs != 0 {
		ts = protowire.AppendTag(ts, timestampSecondsField, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(secs))
	}
	if nanos := e.Stored.Nanosecond(); nanos != 0 {
		ts = protowire.AppendTag(ts, timestampNanosField, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(nanos))
	}
	b = protowire.AppendTag(b, eventPublishTimeField, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	revision := protowire.SizeTag(revisionField) + protowire.SizeVarint(e.Seq)
	b = protowire.AppendTag(b, eventOrderField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(e.Order)+revision))
	b = append(b, e.Order...)
	b = protowire.AppendTag(b, revisionField, protowire.VarintType)
	return protowire.AppendVarint(b, e.Seq)
}
