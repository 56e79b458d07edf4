package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// What a direct nats.go client writes to store the same events as ordersd:
// the same subjects, payloads and headers, with the same concurrency and
// idempotency headers.

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

var eventTokens = map[ordersv1.OrderStatus]string{
	ordersv1.OrderStatus_ORDER_STATUS_CREATED:  "created",
	ordersv1.OrderStatus_ORDER_STATUS_APPROVED: "approved",
}

// directEvent is the message of an order's event, with a Nats-Msg-Id.
func directEvent(order *ordersv1.Order, requestID string) *nats.Msg {
	token := eventTokens[order.GetStatus()]
	data, err := proto.Marshal(order)
	if err != nil {
		panic(err)
	}
	msg := nats.NewMsg("ORDERS." + token + "." + order.GetOrderId())
	msg.Data = data
	msg.Header.Set("Content-Type", "application/protobuf; proto=orders.v1.Order")
	msg.Header.Set("Ordersd-Event-Type", token)
	msg.Header.Set("Ordersd-Request-Id", requestID)
	msg.Header.Set(jetstream.MsgIDHeader, token+":"+order.GetOrderId()+":"+requestID)
	return msg
}

// expectNew makes a publish fail unless the order has no event yet.
func expectNew(order *ordersv1.Order) jetstream.PublishOpt {
	return jetstream.WithExpectLastSequenceForSubject(0, "ORDERS.*."+order.GetOrderId())
}

var requestIDs atomic.Uint64

func nextRequestID() string {
	return fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), requestIDs.Add(1))
}

// benchCreate is the CreateOrder request of the ordersd side.
func benchCreate() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{RequestId: nextRequestID(), CustomerId: "bench", CurrencyCode: "EUR", Items: benchItems}
}
