package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// listCustomer is the customer whose orders the list workload asks for.
const listCustomer = "bench-list"

// listOrders: one customer's 50 orders (created, approved, paid: 150
// events) spread through a stream of -list-events events of other
// customers. ListOrders of that customer vs the direct nats.go way of
// answering the same question (an ordered consumer on the customer's
// subjects, folding each order's last state); then GetOrderHistory of
// one of its orders vs a direct ordered consumer (the way History read
// before) and vs the same reads ordersd makes, done directly.
func (b *bench) listOrders() error {
	ctx := context.Background()
	ids, err := b.seedListStream(b.o.listEvents)
	if err != nil {
		return err
	}
	stream, err := b.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return err
	}
	customer, _ := eventstore.FilterSubjects(eventstore.Filter{CustomerID: listCustomer})
	direct, err := runFor(b.o.duration, 1, func(int) (bool, error) {
		orders, err := directFold(ctx, b.js, customer)
		if err == nil && len(orders) != len(ids) {
			err = fmt.Errorf("direct fold found %d orders, want %d", len(orders), len(ids))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	ordersd, err := runFor(b.o.duration, 1, func(int) (bool, error) {
		res, err := b.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: listCustomer, PageSize: 50})
		if err == nil && len(res.GetOrders()) != len(ids) {
			err = fmt.Errorf("ListOrders found %d orders, want %d", len(res.GetOrders()), len(ids))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	b.add(withNote(compare(fmt.Sprintf("ListOrders, 1 customer's 50 orders among %d events", b.o.listEvents), direct, ordersd, 0), "direct: ordered consumer on the customer's subjects, folded"))

	// By status across all customers: the list customer's 50 orders, and
	// those that earlier workloads paid (counted once, by the direct fold).
	paid := []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_PAID}
	paidFilters, _ := eventstore.FilterSubjects(eventstore.Filter{Statuses: paid})
	allPaid, err := directFold(ctx, b.js, paidFilters)
	if err != nil {
		return err
	}
	direct, err = runFor(b.o.duration, 1, func(int) (bool, error) {
		orders, err := directFold(ctx, b.js, paidFilters)
		if err == nil && len(orders) != len(allPaid) {
			err = fmt.Errorf("direct fold found %d paid orders, want %d", len(orders), len(allPaid))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	ordersd, err = runFor(b.o.duration, 1, func(int) (bool, error) {
		res, err := b.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{Statuses: paid, PageSize: 50})
		if err == nil && len(res.GetOrders()) != min(50, len(allPaid)) {
			err = fmt.Errorf("ListOrders found %d paid orders on its first page, want %d", len(res.GetOrders()), min(50, len(allPaid)))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	b.add(withNote(compare(fmt.Sprintf("ListOrders, PAID across customers (%d among %d+ events), first page of 50", len(allPaid), b.o.listEvents), direct, ordersd, 0), "direct: ordered consumer on ORDERS.paid.*.*, folded (all of them)"))

	// Two statuses across all customers: each order is listed at its first
	// event in them (its approval), and its later paid event is passed over
	// after one more read.
	approvedOrPaid := []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ordersv1.OrderStatus_ORDER_STATUS_PAID}
	bothFilters, _ := eventstore.FilterSubjects(eventstore.Filter{Statuses: approvedOrPaid})
	allBoth, err := directFold(ctx, b.js, bothFilters)
	if err != nil {
		return err
	}
	direct, err = runFor(b.o.duration, 1, func(int) (bool, error) {
		orders, err := directFold(ctx, b.js, bothFilters)
		if err == nil && len(orders) != len(allBoth) {
			err = fmt.Errorf("direct fold found %d approved or paid orders, want %d", len(orders), len(allBoth))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	ordersd, err = runFor(b.o.duration, 1, func(int) (bool, error) {
		res, err := b.client.ListOrders(ctx, &ordersv1.ListOrdersRequest{Statuses: approvedOrPaid, PageSize: 50})
		if err == nil && len(res.GetOrders()) != min(50, len(allBoth)) {
			err = fmt.Errorf("ListOrders found %d approved or paid orders on its first page, want %d", len(res.GetOrders()), min(50, len(allBoth)))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	b.add(withNote(compare(fmt.Sprintf("ListOrders, APPROVED or PAID across customers (%d among %d+ events), first page of 50", len(allBoth), b.o.listEvents), direct, ordersd, 0), "direct: ordered consumer on ORDERS.approved.*.* and ORDERS.paid.*.*, folded (all of them)"))

	// One order's history: 3 events.
	key := eventstore.OrderKey{CustomerID: listCustomer, OrderID: ids[len(ids)/2]}
	filter := b.orderSubjects(key)
	history, err := runFor(b.o.duration, 1, func(int) (bool, error) {
		h, err := b.client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: key.OrderID})
		if err != nil {
			return false, err
		}
		n := 0
		for {
			if _, err := h.Recv(); err != nil {
				if n != 3 {
					return false, fmt.Errorf("history of %d events, want 3 (%v)", n, err)
				}
				return false, nil
			}
			n++
		}
	})
	if err != nil {
		return err
	}
	byConsumer, err := runFor(b.o.duration, 1, func(int) (bool, error) {
		orders, err := directFold(ctx, b.js, []string{filter})
		if err == nil && len(orders) != 1 {
			err = fmt.Errorf("direct history found %d orders", len(orders))
		}
		return false, err
	})
	if err != nil {
		return err
	}
	b.add(withNote(compare("GetOrderHistory, 3 events", byConsumer, history, 0), "direct: an ordered consumer on the order's subjects"))
	streams, err := b.layoutStreams(ctx)
	if err != nil {
		return err
	}
	byReads, err := runFor(b.o.duration, 1, func(int) (bool, error) {
		// ordersd's steps: the order's customer, its last event, then
		// each event from the first to that one.
		key, err := b.directLocate(ctx, streams, key.OrderID)
		if err != nil {
			return false, err
		}
		last, err := stream.GetLastMsgForSubject(ctx, b.orderSubjects(key))
		if err != nil {
			return false, err
		}
		n := 0
		for seq := uint64(1); seq <= last.Sequence; n++ {
			raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
			if err != nil {
				return false, err
			}
			seq = raw.Sequence + 1
		}
		if n != 3 {
			return false, fmt.Errorf("read %d events, want 3", n)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	b.add(withNote(compare("GetOrderHistory, 3 events", byReads, history, 0), "direct: ordersd's steps (index, last event, next-message reads up to it)"))
	return nil
}

func withNote(r result, note string) result {
	r.Note = note
	return r
}

// directFold reads every event on filters with an ordered consumer and
// returns each order's last state, in the order the orders first appear.
func directFold(ctx context.Context, js jetstream.JetStream, filters []string) ([]*ordersv1.Order, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, eventstore.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return nil, err
	}
	last := map[string]*ordersv1.Order{}
	var order []string
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		got, pending := 0, uint64(0)
		for msg := range batch.Messages() {
			got++
			o := &ordersv1.Order{}
			if err := proto.Unmarshal(msg.Data(), o); err != nil {
				return nil, err
			}
			if _, ok := last[o.GetOrderId()]; !ok {
				order = append(order, o.GetOrderId())
			}
			last[o.GetOrderId()] = o
			meta, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			// A fetch that does not wait may come back empty while events
			// are still pending (a busy server): only the consumer's own
			// count says the fold is done.
			info, err := cons.Info(ctx)
			if err != nil {
				return nil, err
			}
			pending = info.NumPending
		}
		if pending == 0 {
			break
		}
	}
	out := make([]*ordersv1.Order, 0, len(order))
	for _, id := range order {
		out = append(out, last[id])
	}
	return out, nil
}

// seedListStream stores events of many customers and, spread among them,
// the list customer's 50 orders with their index entries, each created,
// approved and paid. It returns those orders' ids.
func (b *bench) seedListStream(events int) ([]string, error) {
	const orders = 50
	var ids []string
	stored := 0
	others := func(n int) error {
		err := b.storeEvents(n, func() (*nats.Msg, jetstream.PublishOpt) {
			order := newDirectOrder()
			order.CustomerId = fmt.Sprintf("c-%d", stored%10_000)
			stored++
			return b.directEvent(order, ""), b.expectNew(order)
		})
		return err
	}
	gap := max(events/orders, 1)
	for i := range orders {
		if err := others(gap); err != nil {
			return nil, err
		}
		order := newDirectOrder()
		order.CustomerId = listCustomer
		ids = append(ids, order.GetOrderId())
		if err := b.directCreate(context.Background(), order); err != nil {
			return nil, err
		}
		seq := uint64(0)
		for _, next := range []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_APPROVED, ordersv1.OrderStatus_ORDER_STATUS_PAID} {
			if seq == 0 {
				raw, err := b.js.Stream(context.Background(), eventstore.StreamName)
				if err != nil {
					return nil, err
				}
				last, err := raw.GetLastMsgForSubject(context.Background(), b.orderSubjects(eventstore.KeyOf(order)))
				if err != nil {
					return nil, err
				}
				seq = last.Sequence
			}
			order.Status = next
			order.UpdateTime = timestamppb.Now()
			ack, err := b.js.PublishMsg(context.Background(), b.directEvent(order, ""), b.o.layout.ExpectRevision(eventstore.KeyOf(order), seq))
			if err != nil {
				return nil, err
			}
			seq = ack.Sequence
		}
		_ = i
	}
	return slices.Clip(ids), nil
}
