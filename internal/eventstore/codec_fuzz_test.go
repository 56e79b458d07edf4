package eventstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// FuzzDecodeEvent feeds arbitrary subjects, headers and payloads to the
// event decoder, as another publisher on ORDERS.> could: it never panics,
// fails only with ErrCorruptEvent, and what it accepts is an order event
// stored on its own subject, whose fields are what the subject, the
// headers and the message say: status, customer and order id from the subject (the
// payload agreeing), the request id from Ordersd-Request-Id, the revision
// and sequence from the stream sequence, the publish time from the
// stored time. An empty header value stands for a header left out.
func FuzzDecodeEvent(f *testing.F) {
	good, _ := proto.Marshal(&ordersv1.Order{OrderId: "o-1", Status: ordersv1.OrderStatus_ORDER_STATUS_PAID, CustomerId: "c"})
	created, _ := proto.Marshal(&ordersv1.Order{OrderId: "o-1", Status: ordersv1.OrderStatus_ORDER_STATUS_CREATED, CustomerId: "c"})
	f.Add("ORDERS.paid.c.o-1", "paid", "req-1", ContentTypeOrder, good)
	f.Add("ORDERS.paid.c.o-1", "", "", "", good)
	f.Add("ORDERS.paid.c.o-1", "created", "req-1", "application/json", good) // headers that contradict the subject
	f.Add("ORDERS.created.c.o-1", "created", "r\x00\n.*>", ContentTypeOrder, created)
	f.Add("ORDERS.created.c.o-1", "paid", "", ContentTypeOrder, good)
	f.Add("ORDERS.paid.o-1", "paid", "req-1", ContentTypeOrder, good) // the layout before customer tokens
	f.Add("ORDERS.paid.d.o-1", "paid", "", ContentTypeOrder, good)    // another customer's subject
	f.Add("ORDERS.paid", "paid", "", "", []byte{})
	f.Add("ORDERS.>", "", "", "", []byte{0xff, 0x01})
	stored := time.Unix(1700000000, 123)
	f.Fuzz(func(t *testing.T, subject, eventType, requestID, contentType string, data []byte) {
		header := nats.Header{}
		for k, v := range map[string]string{HeaderEventType: eventType, HeaderRequestID: requestID, HeaderContentType: contentType} {
			if v != "" {
				header.Set(k, v)
			}
		}
		ev, err := Partition{}.decodeEvent(subject, header, data, 42, stored)
		if err != nil {
			if !errors.Is(err, ErrCorruptEvent) {
				t.Fatalf("error %v is not ErrCorruptEvent", err)
			}
			if ev.event != nil {
				t.Fatalf("an event beside the error %v", err)
			}
			return
		}
		order := ev.event.GetOrder()
		want, err := EventSubject(order.GetStatus(), KeyOf(order))
		if err != nil || want != subject {
			t.Fatalf("accepted %q for an order whose subject is %q (%v)", subject, want, err)
		}
		if ev.requestID != requestID {
			t.Fatalf("request id %q, but Ordersd-Request-Id says %q", ev.requestID, requestID)
		}
		if ev.event.GetSequence() != 42 || order.GetRevision() != 42 {
			t.Fatalf("sequence %d, revision %d; want the stream sequence 42", ev.event.GetSequence(), order.GetRevision())
		}
		if !ev.event.GetPublishTime().AsTime().Equal(stored) {
			t.Fatalf("publish time %v, want the stored time %v", ev.event.GetPublishTime().AsTime(), stored)
		}
		// The exported decoder gives the same event.
		pub, err := DecodeEvent(subject, header, data, 42, stored)
		if err != nil || !proto.Equal(pub, ev.event) {
			t.Fatalf("DecodeEvent: %v, %v; decodeEvent: %v", pub, err, ev.event)
		}
	})
}
