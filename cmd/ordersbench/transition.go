package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// transition: ApproveOrder on distinct orders vs the same steps done
// directly: find the order's customer in the order-id index, read the
// order's last event, check it, publish the approved state with an expected
// last sequence on ORDERS.*.<customer_id>.<id>.
func (b *bench) transition() error {
	ctx := context.Background()
	c := b.o.transitionC
	// Enough created orders for each side never to run out.
	const perSide = 40_000
	directIDs, err := b.seedOrders(perSide)
	if err != nil {
		return err
	}
	ordersdIDs, err := b.seedOrders(perSide)
	if err != nil {
		return err
	}
	streams, err := b.layoutStreams(ctx)
	if err != nil {
		return err
	}

	var next atomic.Int64
	direct, err := runFor(b.o.duration, c, func(int) (bool, error) {
		i := next.Add(1) - 1
		if i >= int64(len(directIDs)) {
			return true, nil
		}
		key, err := b.directLocate(ctx, streams, directIDs[i])
		if err != nil {
			return false, err
		}
		raw, err := streams[b.o.layout.Of(key.OrderID).Stream()].GetLastMsgForSubject(ctx, b.orderSubjects(key))
		if err != nil {
			return false, err
		}
		order := &ordersv1.Order{}
		if err := proto.Unmarshal(raw.Data, order); err != nil {
			return false, err
		}
		if order.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CREATED {
			return false, errors.New("order not in created")
		}
		order.Status = ordersv1.OrderStatus_ORDER_STATUS_APPROVED
		order.UpdateTime = timestamppb.New(time.Now())
		_, err = b.js.PublishMsg(ctx, b.directEvent(order, nextRequestID()), b.o.layout.ExpectRevision(key, raw.Sequence))
		return false, err
	})
	if err != nil {
		return err
	}
	next.Store(0)
	ordersd, err := runFor(b.o.duration, c, func(int) (bool, error) {
		i := next.Add(1) - 1
		if i >= int64(len(ordersdIDs)) {
			return true, nil
		}
		_, err := b.client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: ordersdIDs[i], RequestId: nextRequestID()})
		return false, err
	})
	if err != nil {
		return err
	}
	r := compare(fmt.Sprintf("transition, c=%d", c), direct, ordersd, 0.5)
	if int(direct.ops) >= perSide || int(ordersd.ops) >= perSide {
		r.Note = "ran out of seeded orders; raise perSide"
	}
	b.add(r)
	return nil
}

// seedOrders stores count created orders (their index entries, then
// their events) with asynchronous publishes and returns their ids.
func (b *bench) seedOrders(count int) ([]string, error) {
	orders := make([]*ordersv1.Order, count)
	ids := make([]string, count)
	for i := range orders {
		orders[i] = newDirectOrder()
		ids[i] = orders[i].GetOrderId()
	}
	next := 0
	if err := b.storeEvents(count, func() (*nats.Msg, jetstream.PublishOpt) {
		next++
		return b.claimEntry(orders[next-1])
	}); err != nil {
		return nil, err
	}
	next = 0
	err := b.storeEvents(count, func() (*nats.Msg, jetstream.PublishOpt) {
		next++
		return b.directEvent(orders[next-1], nextRequestID()), b.expectNew(orders[next-1])
	})
	return ids, err
}
