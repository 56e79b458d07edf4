package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// What a direct nats.go client writes to store the same events as ordersd:
// the same messages (ordersd's encoder), with the same concurrency and
// idempotency checks.

var directIDs atomic.Uint64

// newDirectOrder is an order as ordersd would store it on creation.
func newDirectOrder() *ordersv1.Order {
	now := timestamppb.New(time.Now())
	return &ordersv1.Order{
		OrderId:      fmt.Sprintf("direct-%d-%d", time.Now().UnixNano(), directIDs.Add(1)),
		CustomerId:   "bench",
		Status:       ordersv1.OrderStatus_ORDER_STATUS_CREATED,
		Items:        benchItems,
		CurrencyCode: "EUR",
		TotalMinor:   2 * 1250,
		CreateTime:   now,
		UpdateTime:   now,
	}
}

var benchItems = []*ordersv1.LineItem{{Sku: "BOOK-42", Quantity: 2, UnitPriceMinor: 1250}}

// directEvent is the message of an order's event, with its Nats-Msg-Id:
// what ordersd stores, built by ordersd's own encoder, on the order's
// partition in the run's layout.
func (b *bench) directEvent(order *ordersv1.Order, requestID string) *nats.Msg {
	msg, err := b.o.layout.EncodeEvent(order, requestID)
	if err != nil {
		panic(err) // the benchmark's own orders are valid
	}
	return msg
}

// orderSubjects is the filter of every event of one of the benchmark's orders.
func (b *bench) orderSubjects(k eventstore.OrderKey) string {
	filter, err := b.o.layout.Of(k.OrderID).OrderSubjects(k)
	if err != nil {
		panic(err) // the benchmark's own ids are valid
	}
	return filter
}

// expectNew makes a publish fail unless the order has no event yet.
func (b *bench) expectNew(order *ordersv1.Order) jetstream.PublishOpt {
	return b.o.layout.ExpectRevision(eventstore.KeyOf(order), 0)
}

// claimEntry is a new order's id claim (in ORDER_IDS in layout 2, in the
// order's partition in layout 3) and the option that makes it fail when
// the id is taken.
func (b *bench) claimEntry(order *ordersv1.Order) (*nats.Msg, jetstream.PublishOpt) {
	return b.o.layout.Of(order.GetOrderId()).ClaimEntry(eventstore.KeyOf(order))
}

// directCreate stores a new order as ordersd's Create does: its id claim
// (which keeps order ids unique across customers), then its created event.
func (b *bench) directCreate(ctx context.Context, order *ordersv1.Order) error {
	entry, expectNoEntry := b.claimEntry(order)
	if _, err := b.js.PublishMsg(ctx, entry, expectNoEntry); err != nil {
		return err
	}
	_, err := b.js.PublishMsg(ctx, b.directEvent(order, nextRequestID()), b.expectNew(order))
	return err
}

// layoutStreams are the handles of every stream of the run's layout that
// holds orders or claims, by name.
func (b *bench) layoutStreams(ctx context.Context) (map[string]jetstream.Stream, error) {
	streams := map[string]jetstream.Stream{}
	for _, p := range b.o.layout.All() {
		for _, name := range []string{p.Stream(), p.ClaimStream()} {
			if streams[name] != nil {
				continue
			}
			s, err := b.js.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			streams[name] = s
		}
	}
	return streams, nil
}

// directLocate finds an order's key from its id claim, as every ordersd
// call that names only an order does.
func (b *bench) directLocate(ctx context.Context, streams map[string]jetstream.Stream, orderID string) (eventstore.OrderKey, error) {
	p := b.o.layout.Of(orderID)
	raw, err := streams[p.ClaimStream()].GetLastMsgForSubject(ctx, p.ClaimSubject(orderID))
	if err != nil {
		return eventstore.OrderKey{}, err
	}
	return eventstore.OrderKey{CustomerID: string(raw.Data), OrderID: orderID}, nil
}

// setupBatch is how many asynchronous publishes the benchmark's own set-up
// keeps outstanding before it waits for their acks: nats.go refuses
// publishes beyond its pending limit once a short stall wait runs out,
// which happens on a loaded machine.
const setupBatch = 1000

// storeEvents stores count events, made by next, with asynchronous
// publishes, and returns once JetStream has acknowledged them all.
func (b *bench) storeEvents(count int, next func() (*nats.Msg, jetstream.PublishOpt)) error {
	for i := range count {
		msg, opt := next()
		if _, err := b.js.PublishMsgAsync(msg, opt); err != nil {
			return err
		}
		if (i+1)%setupBatch == 0 || i == count-1 {
			select {
			case <-b.js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return fmt.Errorf("storing %d events: JetStream did not acknowledge them within a minute", count)
			}
		}
	}
	return nil
}

var requestIDs atomic.Uint64

func nextRequestID() string {
	return fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), requestIDs.Add(1))
}

// benchCreate is the CreateOrder request of the ordersd side.
func benchCreate() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{RequestId: nextRequestID(), CustomerId: "bench", CurrencyCode: "EUR", Items: benchItems}
}

// statusSubjects is the filter of every event of one type, in layout 2:
// the workloads that use it (consume, review) refuse -partitions.
func statusSubjects(status ordersv1.OrderStatus) string {
	filters, err := eventstore.Partition{}.FilterSubjects(eventstore.Filter{Statuses: []ordersv1.OrderStatus{status}})
	if err != nil {
		panic(err) // the benchmark's own statuses are valid
	}
	return filters[0]
}
