package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// createdFrom consumes CREATED events stored after the marker order.
func createdFrom(marker *ordersv1.Order, ackWait time.Duration) client.ConsumeOptions {
	return client.ConsumeOptions{
		Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		Settings: &ordersv1.ConsumerSettings{
			AckWait: durationpb.New(ackWait),
			Start:   &ordersv1.ConsumerSettings_StartSequence{StartSequence: marker.GetRevision() + 1},
		},
		Heartbeat: time.Second,
	}
}

// A handler's error releases the event for redelivery after NakMinDelay;
// Terminate drops it for good; success acks it.
func TestConsumeNaksFailuresWithBackoffAndTerminates(t *testing.T) {
	c := dialExamplesNode(t)
	customer := "nak-" + client.NewRequestID()
	marker := createFor(t, c, customer)
	failing := createFor(t, c, customer)
	poison := createFor(t, c, customer)
	fine := createFor(t, c, customer)

	got := newDeliveries()
	opts := createdFrom(marker, 30*time.Second)
	opts.NakMinDelay = time.Second
	stop := consumeInBackground(t, c, "nak-"+client.NewRequestID(), opts, func(_ context.Context, m *client.Message) error {
		got.add(m)
		switch m.Event.GetOrder().GetOrderId() {
		case failing.GetOrderId():
			if m.DeliveryAttempt == 1 {
				return errors.New("not yet")
			}
		case poison.GetOrderId():
			return client.Terminate("cannot be processed\never")
		}
		return nil
	})
	waitFor(t, 20*time.Second, "the failed event delivered again", func() bool {
		ms, _ := got.of(failing.GetOrderId())
		return len(ms) >= 2
	})
	ms, at := got.of(failing.GetOrderId())
	if ms[0].DeliveryAttempt != 1 || ms[1].DeliveryAttempt != 2 {
		t.Errorf("delivery attempts %d, %d; want 1, 2", ms[0].DeliveryAttempt, ms[1].DeliveryAttempt)
	}
	if gap := at[1].Sub(at[0]); gap < opts.NakMinDelay {
		t.Errorf("redelivered after %s, before the NAK delay %s", gap, opts.NakMinDelay)
	}
	if err := stop(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	// The poison event, terminated at once, had as long to come back.
	if ms, _ := got.of(poison.GetOrderId()); len(ms) != 1 {
		t.Errorf("terminated event delivered %d times, want once", len(ms))
	}
	if ms, _ := got.of(fine.GetOrderId()); len(ms) != 1 {
		t.Errorf("acked event delivered %d times, want once", len(ms))
	}
}

// A handler that runs longer than the ack wait keeps its event: the
// client extends its deadline, so it is not redelivered meanwhile, and
// the event is still the consumer's, awaiting its ack (an extension that
// acked would leave nothing awaiting): when the handler then fails, the
// event is delivered again.
func TestConsumeExtendsTheAckDeadlineWhileTheHandlerRuns(t *testing.T) {
	c := dialExamplesNode(t)
	queues := ordersv1.NewQueueServiceClient(c.Conn())
	customer := "slow-" + client.NewRequestID()
	marker := createFor(t, c, customer)
	slow := createFor(t, c, customer)

	// Extensions every tenth of the ack wait: a loaded machine may delay
	// some, not all nine before the deadline.
	const ackWait = 2 * time.Second
	opts := createdFrom(marker, ackWait)
	opts.ExtendEvery = ackWait / 10
	opts.NakMinDelay = 100 * time.Millisecond
	consumer := "slow-" + client.NewRequestID()
	got := newDeliveries()
	var finished atomic.Pointer[time.Time]
	awaitingAck := make(chan int64, 1)
	stop := consumeInBackground(t, c, consumer, opts, func(ctx context.Context, m *client.Message) error {
		got.add(m)
		if m.DeliveryAttempt > 1 {
			return nil
		}
		time.Sleep(5 * ackWait / 2)
		info, err := queues.GetConsumer(ctx, &ordersv1.GetConsumerRequest{Consumer: consumer})
		if err != nil {
			t.Errorf("GetConsumer: %v", err)
		}
		awaitingAck <- int64(info.GetConsumer().GetNumAckPending())
		now := time.Now()
		finished.Store(&now)
		return errors.New("failed after a long time")
	})
	if n := <-awaitingAck; n != 1 {
		t.Errorf("after two and a half ack waits of extensions, %d events await their ack, want the slow one: an extension settled it", n)
	}
	waitFor(t, 30*time.Second, "the slow event delivered again after its handler failed", func() bool {
		ms, _ := got.of(slow.GetOrderId())
		return len(ms) >= 2
	})
	if err := stop(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	ms, at := got.of(slow.GetOrderId())
	if ms[1].DeliveryAttempt != 2 || at[1].Before(*finished.Load()) {
		t.Fatalf("the slow event was delivered again (attempt %d) %v after its handler began, while it ran (%v): its deadline was not extended",
			ms[1].DeliveryAttempt, at[1].Sub(at[0]), finished.Load().Sub(at[0]))
	}
}

// At most MaxInFlight handlers run at once; stopping waits for them and
// acks their events before Consume returns, and the events not yet
// handled stay for the next consumer.
func TestConsumeFlowControlAndGracefulStop(t *testing.T) {
	c := dialExamplesNode(t)
	customer := "flow-" + client.NewRequestID()
	marker := createFor(t, c, customer)
	for range 10 {
		createFor(t, c, customer)
	}
	consumer := "flow-" + client.NewRequestID()
	opts := createdFrom(marker, 30*time.Second)
	opts.MaxInFlight = 3

	var running, most, handled atomic.Int32
	release := make(chan struct{})
	stop := consumeInBackground(t, c, consumer, opts, func(context.Context, *client.Message) error {
		now := running.Add(1)
		for old := most.Load(); now > old && !most.CompareAndSwap(old, now); old = most.Load() {
		}
		<-release
		running.Add(-1)
		handled.Add(1)
		return nil
	})
	waitFor(t, 10*time.Second, "three handlers running", func() bool { return running.Load() == 3 })
	time.Sleep(300 * time.Millisecond) // room for a fourth, were flow control broken
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Consume returned (%v) while its handlers still ran", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("consume: %v", err)
	}
	if most.Load() != 3 || handled.Load() != 3 {
		t.Fatalf("at most %d handlers ran at once and %d finished; want 3 and 3", most.Load(), handled.Load())
	}

	// The next Consume on the consumer gets the other seven, none of the three.
	rest := newDeliveries()
	var count atomic.Int32
	stop = consumeInBackground(t, c, consumer, opts, func(_ context.Context, m *client.Message) error {
		rest.add(m)
		count.Add(1)
		return nil
	})
	waitFor(t, 20*time.Second, "the other seven delivered", func() bool { return count.Load() >= 7 })
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := count.Load(); n != 7 {
		t.Fatalf("the next consumer got %d events, want the 7 not handled: the 3 handled were not acked before Consume returned", n)
	}
}

// A handler still running DrainTimeout after the stop has its context
// cancelled; its event is released, not acked.
func TestConsumeCancelsHandlersAfterTheDrainTimeout(t *testing.T) {
	c := dialExamplesNode(t)
	customer := "drain-" + client.NewRequestID()
	marker := createFor(t, c, customer)
	stuck := createFor(t, c, customer)
	consumer := "drain-" + client.NewRequestID()
	opts := createdFrom(marker, 30*time.Second)
	opts.DrainTimeout = 200 * time.Millisecond
	opts.NakMinDelay = 10 * time.Millisecond

	started := make(chan struct{})
	stop := consumeInBackground(t, c, consumer, opts, func(ctx context.Context, _ *client.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	if err := stop(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	got := newDeliveries()
	stop = consumeInBackground(t, c, consumer, opts, func(_ context.Context, m *client.Message) error {
		got.add(m)
		return nil
	})
	waitFor(t, 10*time.Second, "the cancelled handler's event delivered again", func() bool {
		ms, _ := got.of(stuck.GetOrderId())
		return len(ms) == 1
	})
	if ms, _ := got.of(stuck.GetOrderId()); ms[0].DeliveryAttempt < 2 {
		t.Errorf("delivery attempt %d, want a redelivery", ms[0].DeliveryAttempt)
	}
	_ = stop()
}

// Bad options fail at once, with ErrInvalidOption; a request the node
// refuses ends Consume instead of reconnecting forever.
func TestConsumeRefusesBadOptionsAndRequests(t *testing.T) {
	c := dialExamplesNode(t)
	ctx := context.Background()
	noop := func(context.Context, *client.Message) error { return nil }
	for name, opts := range map[string]client.ConsumeOptions{
		"too many in flight": {MaxInFlight: 1001},
		"heartbeat too fast": {Heartbeat: time.Millisecond},
		"nak delays crossed": {NakMinDelay: time.Minute, NakMaxDelay: time.Second},
	} {
		if err := c.Consume(ctx, "x", opts, noop); !errors.Is(err, client.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, "not.a.valid.name", client.ConsumeOptions{}, noop) }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, client.ErrInvalidOption) {
			t.Fatalf("consume with a bad name: %v, want the node's INVALID_ARGUMENT", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume kept retrying a request the node refuses")
	}
}
