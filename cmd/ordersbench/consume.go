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

// consume: ConsumeOrders + AckOrders vs a direct pull consumer with
// Messages and Ack, each over the same events. Latency is from an event's
// store time to its receipt.
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
		return directEvent(order, nextRequestID()), expectNew(order)
	})
	if err != nil {
		return err
	}

	// Direct: a durable pull consumer, Messages, Ack.
	paid := statusSubjects(ordersv1.OrderStatus_ORDER_STATUS_PAID)
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bench-direct", FilterSubject: paid, AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first, MaxAckPending: 20_000,
	})
	if err != nil {
		return err
	}
	h := &histogram{}
	start, cpu0 := time.Now(), cpuTime()
	it, err := cons.Messages(jetstream.PullMaxMessages(1000), jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return err
	}
	for range n {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		if meta, err := msg.Metadata(); err == nil {
			h.record(time.Since(meta.Timestamp))
		}
		if err := msg.Ack(); err != nil {
			return err
		}
	}
	it.Stop()
	if err := b.nc.Flush(); err != nil {
		return err
	}
	direct := side{ops: uint64(n), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}

	// ordersd: one ConsumeOrders stream; acks sent in batches by another
	// goroutine, several calls in flight, as a real client would.
	h = &histogram{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, cpu0 = time.Now(), cpuTime()
	cstream, err := b.client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: "bench-ordersd", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_PAID}, MaxInFlight: 1000,
		Settings: &ordersv1.ConsumerSettings{Start: &ordersv1.ConsumerSettings_StartSequence{StartSequence: first}},
	})
	if err != nil {
		return err
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
			return err
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
	cancel()
	if ackErr != nil {
		return ackErr
	}
	b.add(compare(fmt.Sprintf("consume + ack, %d events", n), direct, ordersd, 0.7))
	return nil
}
