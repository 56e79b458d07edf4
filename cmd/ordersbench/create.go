package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// createUnary: CreateOrder vs a synchronous Publish of the same event, at
// each concurrency.
func (b *bench) createUnary() error {
	ctx := context.Background()
	for _, c := range b.o.concurrency {
		direct, err := runFor(b.o.duration, c, func(int) (bool, error) {
			return false, b.directCreate(ctx, newDirectOrder())
		})
		if err != nil {
			return err
		}
		ordersd, err := runFor(b.o.duration, c, func(int) (bool, error) {
			_, err := b.client.CreateOrder(ctx, benchCreate())
			return false, err
		})
		if err != nil {
			return err
		}
		target := 0.0
		if c == 64 {
			target = 0.5
		}
		b.add(compare(fmt.Sprintf("create, unary, c=%d", c), direct, ordersd, target))
		if c == 64 {
			b.syncC64 = direct
		}
	}
	return nil
}

// createStreamed: CreateOrders over one stream vs PublishAsync of the same
// events, each keeping many in flight; the streamed rate is also compared
// with synchronous publishing at concurrency 64.
func (b *bench) createStreamed() error {
	ctx := context.Background()
	const window = 1024 // in flight at once, on both sides

	// Direct: PublishMsgAsync with at most window acks outstanding.
	h := &histogram{}
	type inflight struct {
		f  jetstream.PubAckFuture
		at time.Time
	}
	futures := make(chan inflight, window)
	var waitErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f := range futures {
			select {
			case <-f.f.Ok():
				h.record(time.Since(f.at))
			case err := <-f.f.Err():
				waitErr = err
			}
		}
	}()
	start, cpu0 := time.Now(), cpuTime()
	var ops uint64
	for time.Since(start) < b.o.duration {
		order := newDirectOrder()
		at := time.Now()
		// The index entry and the event both go out at once: a correct
		// client would wait for the entry's ack before sending the event,
		// so this side is faster than correct, and the ratio conservative.
		entry, expectNoEntry := b.claimEntry(order)
		if _, err := b.js.PublishMsgAsync(entry, expectNoEntry); err != nil {
			return err
		}
		f, err := b.js.PublishMsgAsync(b.directEvent(order, nextRequestID()), b.expectNew(order))
		if err != nil {
			return err
		}
		futures <- inflight{f, at}
		ops++
	}
	close(futures)
	wg.Wait()
	if waitErr != nil {
		return waitErr
	}
	direct := side{ops: ops, elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}

	// ordersd: one CreateOrders stream, sender and receiver running apart.
	h = &histogram{}
	stream, err := b.client.CreateOrders(ctx)
	if err != nil {
		return err
	}
	sent := make(chan time.Time, window)
	sendErr := make(chan error, 1)
	start, cpu0 = time.Now(), cpuTime()
	go func() {
		defer close(sent)
		for time.Since(start) < b.o.duration {
			at := time.Now()
			sent <- at // blocks while window results are outstanding
			if err := stream.Send(&ordersv1.CreateOrdersRequest{Order: benchCreate()}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	ops = 0
	for at := range sent {
		res, err := stream.Recv()
		if err != nil {
			return err
		}
		if res.GetError() != nil {
			return fmt.Errorf("CreateOrders: %s %s", res.GetError().GetCode(), res.GetError().GetMessage())
		}
		h.record(time.Since(at))
		ops++
	}
	if err := <-sendErr; err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("CreateOrders did not end cleanly: %v", err)
	}
	ordersd := side{ops: ops, elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: h}

	b.add(compare("create, streamed vs PublishAsync", direct, ordersd, 0.6))
	if b.syncC64.ops > 0 {
		b.add(compare("create, streamed vs sync c=64", b.syncC64, ordersd, 1.0))
	}
	return nil
}
