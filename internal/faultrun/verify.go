package faultrun

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// stored is what the stream ORDERS holds at the end of the run, read
// straight from JetStream, not through ordersd.
type stored struct {
	lastSeq  uint64
	created  map[string][]string // create request id → order ids of its created events
	approved map[string]int      // order id → approved events
	orders   map[string]bool     // order ids with a created event
}

// readStored reads every event of the stream with an ordered consumer.
func readStored(ctx context.Context, js jetstream.JetStream) (*stored, error) {
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return nil, err
	}
	s := &stored{lastSeq: stream.CachedInfo().State.LastSeq, created: map[string][]string{}, approved: map[string]int{}, orders: map[string]bool{}}
	if s.lastSeq == 0 {
		return s, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read the stream: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, err
		}
		ev, err := eventstore.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("a foreign message in the stream: %w", err)
		}
		switch orderID := ev.GetOrder().GetOrderId(); ev.GetOrder().GetStatus() {
		case ordersv1.OrderStatus_ORDER_STATUS_CREATED:
			rid := msg.Headers().Get(eventstore.HeaderRequestID)
			s.created[rid] = append(s.created[rid], orderID)
			s.orders[orderID] = true
		case ordersv1.OrderStatus_ORDER_STATUS_APPROVED:
			s.approved[orderID]++
		}
		if meta.Sequence.Stream >= s.lastSeq {
			return s, nil
		}
	}
}

// check compares what clients were told with what is stored, and fills
// the lost, duplicated and missing counts of the summary.
func (s *stored) check(sum *Summary, l *ledger, q *queueReader, w *watcher) {
	for rid, orderID := range l.created {
		found := false
		for _, id := range s.created[rid] {
			found = found || id == orderID
		}
		if !found {
			sum.Create.Lost++
			sum.note("acknowledged create %s (order %s) is not in the stream", rid, orderID)
		}
	}
	for rid, ids := range s.created {
		if len(ids) > 1 {
			sum.Create.Duplicated++
			sum.note("request %s stored %d orders: %v", rid, len(ids), ids)
		}
	}
	for orderID := range l.approved {
		if s.approved[orderID] == 0 {
			sum.Approve.Lost++
			sum.note("acknowledged approval of %s is not in the stream", orderID)
		}
	}
	for orderID, n := range s.approved {
		if n > 1 {
			sum.Approve.Duplicated++
			sum.note("order %s approved %d times", orderID, n)
		}
	}
	for orderID := range s.orders {
		if q.seen[orderID] == 0 {
			sum.Queue.Missing++
		}
	}
	if sum.Queue.Missing > 0 {
		sum.note("%d created events never reached the work-queue client", sum.Queue.Missing)
	}
	if w.stats.LastSeq != s.lastSeq {
		sum.note("the watcher ended at sequence %d; the stream at %d", w.stats.LastSeq, s.lastSeq)
	}
}
