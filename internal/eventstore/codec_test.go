package eventstore

import (
	"errors"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

func TestDecodeEventRefusesForeignMessages(t *testing.T) {
	t.Parallel()
	order := &ordersv1.Order{OrderId: "o-1", CustomerId: "c-1", Status: ordersv1.OrderStatus_ORDER_STATUS_APPROVED}
	msg, err := EncodeEvent(order, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Partition{}.decodeEvent(msg.Subject, msg.Header, msg.Data, 7, time.Unix(0, 0))
	if err != nil || ev.requestID != "req-1" || ev.event.GetOrder().GetRevision() != 7 || ev.event.GetSequence() != 7 {
		t.Fatalf("round trip: %v, %v", ev, err)
	}
	for name, c := range map[string]struct {
		subject string
		data    []byte
	}{
		"not protobuf":                {msg.Subject, []byte{0xff, 0xff, 0xff}},
		"payload of another order":    {"ORDERS.approved.c-1.o-2", msg.Data},
		"payload of another customer": {"ORDERS.approved.c-2.o-1", msg.Data},
		"payload of another event":    {"ORDERS.paid.c-1.o-1", msg.Data},
		"the layout before customers": {"ORDERS.approved.o-1", msg.Data},
		"not an event subject":        {"ORDERS.misc", msg.Data},
	} {
		if _, err := (Partition{}).decodeEvent(c.subject, msg.Header, c.data, 1, time.Unix(0, 0)); !errors.Is(err, ErrCorruptEvent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
