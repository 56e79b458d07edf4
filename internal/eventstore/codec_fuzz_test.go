package eventstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// FuzzDecodeEvent feeds arbitrary subjects and payloads to the event
// decoder, as another publisher on ORDERS.> could: it never panics, and
// what it accepts is an order event stored on its own subject.
func FuzzDecodeEvent(f *testing.F) {
	good, _ := proto.Marshal(&ordersv1.Order{OrderId: "o-1", Status: ordersv1.OrderStatus_ORDER_STATUS_PAID, CustomerId: "c"})
	f.Add("ORDERS.paid.o-1", good)
	f.Add("ORDERS.created.o-1", good)
	f.Add("ORDERS.paid", []byte{})
	f.Add("ORDERS.>", []byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		ev, err := DecodeEvent(subject, nats.Header{}, data, 42, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, ErrCorruptEvent) {
				t.Fatalf("error %v is not ErrCorruptEvent", err)
			}
			return
		}
		order := ev.GetOrder()
		want, err := EventSubject(order.GetStatus(), order.GetOrderId())
		if err != nil || want != subject {
			t.Fatalf("accepted %q for an order whose subject is %q (%v)", subject, want, err)
		}
		if ev.GetSequence() != 42 || order.GetRevision() != 42 {
			t.Fatalf("sequence %d, revision %d", ev.GetSequence(), order.GetRevision())
		}
	})
}
