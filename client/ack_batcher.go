package client

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Bounds of one flush of the ack batcher.
const (
	ackCallTimeout = 10 * time.Second // one AckOrders call, gRPC's own retries included
	ackAttempts    = 5                // calls for one batch before its acks are given up
)

// ackBatcher sends the acks of a Consume (acks, naks, extensions, terms) in
// AckOrders calls of up to 1,000: what settles while a call is out waits
// for the next one, so batches grow with the rate. Acks whose call fails
// are sent again (acking again is safe), on any node; one that still fails
// is given up, and JetStream redelivers its event after its ack wait.
type ackBatcher struct {
	svc   ordersv1.OrderServiceClient
	delay time.Duration
	log   *slog.Logger
	in    chan *ordersv1.Ack
	done  chan struct{}
}

func newAckBatcher(svc ordersv1.OrderServiceClient, delay time.Duration, log *slog.Logger) *ackBatcher {
	b := &ackBatcher{svc: svc, delay: delay, log: log, in: make(chan *ordersv1.Ack, maxAckBatch), done: make(chan struct{})}
	go b.run()
	return b
}

// add queues an ack; it waits while the queue is full.
func (b *ackBatcher) add(a *ordersv1.Ack) { b.in <- a }

// close sends what is queued and returns when it has been sent (or given up).
func (b *ackBatcher) close() {
	close(b.in)
	<-b.done
}

func (b *ackBatcher) run() {
	defer close(b.done)
	for first := range b.in {
		batch := []*ordersv1.Ack{first}
		timer := time.NewTimer(b.delay)
	collect:
		for len(batch) < maxAckBatch {
			select {
			case a, ok := <-b.in:
				if !ok {
					break collect
				}
				batch = append(batch, a)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		b.send(batch)
	}
}

// send applies batch, retrying what was not applied.
func (b *ackBatcher) send(batch []*ordersv1.Ack) {
	pause := newBackoff(reconnectMin, reconnectMax)
	for attempt := 1; len(batch) > 0; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), ackCallTimeout)
		res, err := b.svc.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: batch})
		cancel()
		switch {
		case err == nil:
			batch = unconfirmed(batch, res.GetResults())
		case permanent(err) && len(batch) > 1:
			// One bad token (from another deployment, after a failover to a
			// node with another key) fails the whole call: send each alone
			// so that the others are applied.
			for _, a := range batch {
				b.send([]*ordersv1.Ack{a})
			}
			return
		case permanent(err):
			b.log.Warn("ack refused; the event will be redelivered after its ack wait", "action", batch[0].GetAction(), "code", status.Code(err), "err", err)
			return
		}
		if len(batch) == 0 {
			return
		}
		if attempt == ackAttempts {
			b.log.Warn("acks not applied; their events will be redelivered after their ack wait", "acks", len(batch), "err", err)
			return
		}
		b.log.Debug("acks not applied yet; sending them again", "acks", len(batch), "code", status.Code(err))
		time.Sleep(pause.next())
	}
}

// unconfirmed returns the acks of batch that JetStream did not confirm.
func unconfirmed(batch []*ordersv1.Ack, results []*ordersv1.AckResult) []*ordersv1.Ack {
	if len(results) != len(batch) {
		return batch
	}
	var again []*ordersv1.Ack
	for i, r := range results {
		if !r.GetConfirmed() {
			again = append(again, batch[i])
		}
	}
	return again
}
