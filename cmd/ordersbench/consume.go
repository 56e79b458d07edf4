package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// consume: StreamOrders, and ConsumeOrders + AckOrders, vs a direct pull
// consumer with Messages and Ack (plain acks, not confirmed) and with
// Messages and DoubleAck (confirmed acks, which is what ordersd promises),
// each over the same events on a durable consumer of its own. Latency is
// from an event's store time to its receipt.
func (b *bench) consume() error {
	ctx := context.Background()
	n := b.o.consumeEvents
	stream, err := b.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	first := info.State.LastSeq + 1
	// Fresh events, all of them "paid", which no other workload writes.
	err = b.storeEvents(n, func() (*nats.Msg, jetstream.PublishOpt) {
		order := newDirectOrder()
		order.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
		order.UpdateTime = timestamppb.Now()
		return b.directEvent(order, nextRequestID()), b.expectNew(order)
	})
	if err != nil {
		return err
	}

	plain, err := b.consumeDirect(ctx, stream, "bench-direct", first, n, false)
	if err != nil {
		return err
	}
	confirmed, err := b.consumeDirect(ctx, stream, "bench-direct-confirmed", first, n, true)
	if err != nil {
		return err
	}
	streamed, err := b.consumeStreamOrders(ctx, first, n)
	if err != nil {
		return err
	}
	unary, err := b.consumeAckOrders(ctx, first, n)
	if err != nil {
		return err
	}
	sync := ""
	if b.o.syncAlways {
		sync = ", sync always"
	}
	b.add(compare(fmt.Sprintf("consume, StreamOrders vs plain acks, %d events%s", n, sync), plain, streamed, 0.7))
	b.add(compare(fmt.Sprintf("consume, StreamOrders vs confirmed acks, %d events%s", n, sync), confirmed, streamed, 1.0))
	b.add(compare(fmt.Sprintf("consume, ConsumeOrders + AckOrders vs plain acks, %d events%s", n, sync), plain, unary, 0.5))
	return nil
}

// consumeDirect reads n events from first on with a durable pull consumer
// of its own (Messages), acking each: with Ack, or with DoubleAck when
// confirm (one round trip per event, as a plain nats.go client does it).
func (b *bench) consumeDirect(ctx context.Context, stream jetstream.Stream, name string, first uint64, n int, confirm bool) (side, error) {
	paid := statusSubjects(ordersv1.OrderStatus_ORDER_STATUS_PAID)
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: paid, AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first, MaxAckPending: 20_000,
	})
	if err != nil {
		return side{}, err
	}
	h := &histogram{}
	start, cpu0 := time.Now(), cpuTime()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000), jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return side{}, err
	}
	for range n {
		msg, err := it.Next()
		if err != nil {
			return side{}, err
		}
		if meta, err := msg.Metadata(); err == nil {
			h.record(time.Since(meta.Timestamp))
		}
		if confirm {
			err = msg.DoubleAck(ctx)
		} else {
			err = msg.Ack()
		}
		if err != nil {
			return side{}, err
		}
	}
	it.Stop()
	if err := b.nc.Flush(); err != nil {
		return side{}, err
	}
	return side{ops: uint64(n), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}, nil
}

// consumeStreamOrders reads n events from first on with one StreamOrders
// stream, acking each response's deliveries with one message on the same
// stream, and ends once every ack is confirmed.
func (b *bench) consumeStreamOrders(ctx context.Context, first uint64, n int) (side, error) {
	h := &histogram{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, cpu0 := time.Now(), cpuTime()
	stream, err := b.client.StreamOrders(ctx)
	if err != nil {
		return side{}, err
	}
	err = stream.Send(&ordersv1.StreamOrdersRequest{Open: &ordersv1.ConsumeOrdersRequest{
		Consumer: "bench-stream", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_PAID}, MaxInFlight: 1000,
		Settings: &ordersv1.ConsumerSettings{Start: &ordersv1.ConsumerSettings_StartSequence{StartSequence: first}},
	}})
	if err != nil {
		return side{}, err
	}
	for confirmed := 0; confirmed < n; {
		res, err := stream.Recv()
		if err != nil {
			return side{}, err
		}
		for _, r := range res.GetAckResults() {
			if !r.GetConfirmed() {
				return side{}, fmt.Errorf("ack not confirmed: %s", r.GetError())
			}
			confirmed++
		}
		if len(res.GetDeliveries()) == 0 {
			continue
		}
		acks := make([]*ordersv1.StreamAck, len(res.GetDeliveries()))
		for i, d := range res.GetDeliveries() {
			h.record(time.Since(d.GetEvent().GetPublishTime().AsTime()))
			acks[i] = &ordersv1.StreamAck{Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: d.GetDeliveryId()}, Action: ordersv1.AckAction_ACK_ACTION_ACK}
		}
		if err := stream.Send(&ordersv1.StreamOrdersRequest{Acks: acks}); err != nil {
			return side{}, err
		}
	}
	return side{ops: uint64(n), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}, nil
}

// consumeAckOrders reads n events from first on with one ConsumeOrders
// stream; acks are sent in batches by other goroutines, several AckOrders
// calls in flight, as a real client would.
func (b *bench) consumeAckOrders(ctx context.Context, first uint64, n int) (side, error) {
	h := &histogram{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, cpu0 := time.Now(), cpuTime()
	cstream, err := b.client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: "bench-ordersd", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_PAID}, MaxInFlight: 1000,
		Settings: &ordersv1.ConsumerSettings{Start: &ordersv1.ConsumerSettings_StartSequence{StartSequence: first}},
	})
	if err != nil {
		return side{}, err
	}
	// Acks are collected into batches (at most 100 tokens, or what came in
	// 1 ms) and sent by 4 goroutines, so several AckOrders calls are in
	// flight while events keep coming.
	tokens := make(chan string, 1000)
	batches := make(chan []*ordersv1.Ack, 16)
	var (
		ackWG  sync.WaitGroup
		ackErr error
		mu     sync.Mutex
	)
	const ackers, batchSize = 4, 100
	go func() {
		defer close(batches)
		var acks []*ordersv1.Ack
		flush := time.NewTicker(time.Millisecond)
		defer flush.Stop()
		for {
			select {
			case tok, ok := <-tokens:
				if !ok {
					if len(acks) > 0 {
						batches <- acks
					}
					return
				}
				acks = append(acks, &ordersv1.Ack{AckToken: tok, Action: ordersv1.AckAction_ACK_ACTION_ACK})
				if len(acks) == batchSize {
					batches <- acks
					acks = nil
				}
			case <-flush.C:
				if len(acks) > 0 {
					batches <- acks
					acks = nil
				}
			}
		}
	}()
	for range ackers {
		ackWG.Add(1)
		go func() {
			defer ackWG.Done()
			for acks := range batches {
				res, err := b.client.AckOrders(context.Background(), &ordersv1.AckOrdersRequest{Acks: acks})
				if err == nil {
					for _, r := range res.GetResults() {
						if !r.GetConfirmed() {
							err = fmt.Errorf("ack not confirmed: %s", r.GetError())
							break
						}
					}
				}
				if err != nil {
					mu.Lock()
					ackErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for received := 0; received < n; {
		res, err := cstream.Recv()
		if err != nil {
			return side{}, err
		}
		if res.GetHeartbeat() {
			continue
		}
		h.record(time.Since(res.GetEvent().GetPublishTime().AsTime()))
		tokens <- res.GetAckToken()
		received++
	}
	close(tokens)
	ackWG.Wait()
	ordersd := side{ops: uint64(n), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}
	return ordersd, ackErr
}
