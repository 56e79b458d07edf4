package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// transition: ApproveOrder on distinct orders vs the same steps done
// directly: read the order's last event, check it, publish the approved
// state with an expected last sequence on ORDERS.*.<id>.
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
	stream, err := b.js.Stream(ctx, "ORDERS")
	if err != nil {
		return err
	}

	var next atomic.Int64
	direct, err := runFor(b.o.duration, c, func(int) (bool, error) {
		i := next.Add(1) - 1
		if i >= int64(len(directIDs)) {
			return true, nil
		}
		id := directIDs[i]
		raw, err := stream.GetLastMsgForSubject(ctx, "ORDERS.*."+id)
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
		_, err = b.js.PublishMsg(ctx, directEvent(order, nextRequestID()), jetstream.WithExpectLastSequenceForSubject(raw.Sequence, "ORDERS.*."+id))
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

// seedOrders stores count created orders with asynchronous publishes and
// returns their ids.
func (b *bench) seedOrders(count int) ([]string, error) {
	ids := make([]string, 0, count)
	for range count {
		order := newDirectOrder()
		if _, err := b.js.PublishMsgAsync(directEvent(order, nextRequestID()), expectNew(order)); err != nil {
			return nil, err
		}
		ids = append(ids, order.GetOrderId())
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return nil, errors.New("seeding orders did not complete within a minute")
	}
	return ids, nil
}
