package eventstore

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// A raw event forwarded as stored reads back as the very OrderEvent
// DecodeEvent makes of it, and CheckRawEvent refuses what DecodeEvent
// refuses for its subject or top-level payload.
func TestRawEventIsWhatDecodeEventGives(t *testing.T) {
	t.Parallel()
	order := &ordersv1.Order{OrderId: "o-1", CustomerId: "c-1", Status: ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
		Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 2, UnitPriceMinor: 300}}, CurrencyCode: "EUR", TotalMinor: 600, Reason: "ok"}
	msg, err := EncodeEvent(order, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, stored := range []time.Time{time.Unix(1_700_000_000, 123_456_789), time.Unix(0, 0), time.Unix(5, 0)} {
		want, err := DecodeEvent(msg.Subject, msg.Header, msg.Data, 300, stored)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := CheckRawEvent(msg.Subject, msg.Data, 300, stored)
		if err != nil || raw.OrderID != "o-1" {
			t.Fatalf("CheckRawEvent: %v, %v", raw, err)
		}
		got := &ordersv1.OrderEvent{}
		if err := proto.Unmarshal(raw.AppendOrderEvent(nil), got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("forwarded %v, decoded %v", got, want)
		}
	}
	for name, c := range map[string]struct {
		subject string
		data    []byte
	}{
		"not protobuf":                {msg.Subject, []byte{0xff, 0xff, 0xff}},
		"truncated":                   {msg.Subject, msg.Data[:len(msg.Data)-1]},
		"payload of another order":    {"ORDERS.approved.c-1.o-2", msg.Data},
		"payload of another customer": {"ORDERS.approved.c-2.o-1", msg.Data},
		"payload of another event":    {"ORDERS.paid.c-1.o-1", msg.Data},
		"not an event subject":        {"ORDERS.misc", msg.Data},
	} {
		if _, err := CheckRawEvent(c.subject, c.data, 1, time.Unix(0, 0)); !errors.Is(err, ErrCorruptEvent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzCheckRawEvent: whatever DecodeEvent accepts, CheckRawEvent accepts,
// and forwards as the same event; it fails only with ErrCorruptEvent.
func FuzzCheckRawEvent(f *testing.F) {
	good, _ := proto.Marshal(&ordersv1.Order{OrderId: "o-1", Status: ordersv1.OrderStatus_ORDER_STATUS_PAID, CustomerId: "c"})
	f.Add("ORDERS.paid.c.o-1", good, uint64(3), int64(1_700_000_000_123))
	f.Add("ORDERS.created.c.o-1", good, uint64(1), int64(0))
	f.Add("ORDERS.paid.c.o-1", []byte{0x0a, 0x03, 'o', '-'}, uint64(1), int64(-5))
	f.Fuzz(func(t *testing.T, subject string, data []byte, seq uint64, storedNanos int64) {
		stored := time.Unix(0, storedNanos)
		raw, rawErr := CheckRawEvent(subject, data, seq, stored)
		if rawErr != nil && !errors.Is(rawErr, ErrCorruptEvent) {
			t.Fatalf("CheckRawEvent: %v", rawErr)
		}
		want, err := DecodeEvent(subject, nil, data, seq, stored)
		if err != nil {
			return
		}
		if rawErr != nil {
			t.Fatalf("DecodeEvent accepts, CheckRawEvent refuses: %v", rawErr)
		}
		got := &ordersv1.OrderEvent{}
		if err := proto.Unmarshal(raw.AppendOrderEvent(nil), got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("forwarded %v, decoded %v", got, want)
		}
	})
}
