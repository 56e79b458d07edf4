package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// streamAcks takes the acks a StreamOrders client sends on its stream,
// applies them through one AckPipeline, and sends their results back in
// responses of their own, as many together as are ready.
type streamAcks struct {
	s    *OrderService
	sess *consumers.Session
	out  *streamSender
	pipe *consumers.AckPipeline

	mu      sync.Mutex
	ready   []*ordersv1.StreamAckResult // results not sent yet
	readyCh chan struct{}               // a token when ready grew
}

// maxAcksAwaited bounds the acks of one stream that wait for JetStream's
// answer; the stream reads no more acks until fewer wait.
const maxAcksAwaited = 10_000

// notHeldAck is the result of an ack whose delivery this stream no longer
// holds: nothing is sent to JetStream for it.
const notHeldAck = "the delivery was already settled, or its ack wait passed and it is due for redelivery (under a new delivery_id): nothing was acked"

// receive reads the client's ack messages until it closes its side (nil)
// or sends something wrong (a status: the stream ends, and none of that
// message's acks is applied).
func (a *streamAcks) receive(ctx context.Context, stream grpc.BidiStreamingServer[ordersv1.StreamOrdersRequest, ordersv1.StreamOrdersResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		settles, results, err := a.check(ctx, req)
		if err != nil {
			return err
		}
		if len(req.GetAcks()) == 0 {
			continue
		}
		a.sess.Settled(settles)
		for a.pipe.Pending() > maxAcksAwaited && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		k := 0
		for _, res := range results {
			if res.Error != "" { // not held: nothing to send
				a.finished(res)
				continue
			}
			a.pipe.Send(settles[k], res)
			k++
		}
	}
}

// done is the AckPipeline's callback: the result of one ack.
func (a *streamAcks) done(tag any, r consumers.SettleResult) {
	res := tag.(*ordersv1.StreamAckResult)
	res.Confirmed = r.Confirmed
	if !r.Confirmed {
		res.Error = unconfirmedAck(r.Err)
		a.s.log.Debug("ack not confirmed", "consumer", a.sess.Consumer(), "err", r.Err)
	}
	a.finished(res)
}

func (a *streamAcks) finished(res *ordersv1.StreamAckResult) {
	a.mu.Lock()
	a.ready = append(a.ready, res)
	a.mu.Unlock()
	select {
	case a.readyCh <- struct{}{}:
	default:
	}
}

// sendResults sends the results as they come, until stop is closed and
// every result is sent.
func (a *streamAcks) sendResults(stop <-chan struct{}) {
	for {
		stopping := false
		select {
		case <-a.readyCh:
		case <-stop:
			stopping = true
		}
		a.mu.Lock()
		batch := a.ready
		a.ready = nil
		a.mu.Unlock()
		if len(batch) > 0 {
			_ = a.out.send(&ordersv1.StreamOrdersResponse{AckResults: batch})
		}
		if stopping {
			return
		}
	}
}

// check validates one ack message whole, before any of it is applied. It
// returns the settles to apply and the result of each ack of req, those
// not to apply already filled in (their Settle has no subject).
func (a *streamAcks) check(ctx context.Context, req *ordersv1.StreamOrdersRequest) ([]consumers.Settle, []*ordersv1.StreamAckResult, error) {
	var v violations
	if req.GetOpen() != nil {
		v.add("open", "is only for the first message: this stream is already open")
	}
	if n := len(req.GetAcks()); n > maxAcksPerCall {
		v.add("acks", "at most %d acks are allowed per message, got %d", maxAcksPerCall, n)
	}
	if len(v) > 0 {
		return nil, nil, v.err()
	}
	settles := make([]consumers.Settle, 0, len(req.GetAcks()))
	results := make([]*ordersv1.StreamAckResult, len(req.GetAcks()))
	var forged []int
	var (
		epochs    []eventstore.Epoch // of the streams, looked up for the first ack by token
		haveEpoch bool
	)
	seen := make(map[settledDelivery]bool, len(req.GetAcks()))
	for i, ack := range req.GetAcks() {
		field := func() string { return fmt.Sprintf("acks[%d]", i) } // for violations only: no formatting per ack
		st := v.settleAction(field, ack.GetAction(), ack.GetNakDelay(), ack.GetReason())
		res := &ordersv1.StreamAckResult{}
		results[i] = res
		switch d := ack.GetDelivery().(type) {
		case *ordersv1.StreamAck_DeliveryId:
			res.Delivery = &ordersv1.StreamAckResult_DeliveryId{DeliveryId: d.DeliveryId}
			subject, known, held := a.sess.Lookup(d.DeliveryId)
			switch {
			case !known:
				v.add(field()+".delivery_id", "no delivery %d was made on this stream", d.DeliveryId)
				continue
			case !held:
				res.Error = notHeldAck
				continue
			}
			st.Ack = subject
		case *ordersv1.StreamAck_AckToken:
			res.Delivery = &ordersv1.StreamAckResult_AckToken{AckToken: d.AckToken}
			subject, err := a.s.Tokens.Verify(d.AckToken)
			if err == nil && !haveEpoch {
				if epochs, err = a.s.Store.Epochs(ctx); err != nil {
					return nil, nil, toStatus(ctx, a.s.log, "", err)
				}
				haveEpoch = true
			}
			if err == nil {
				err = subject.CheckIssued(a.s.Store.Layout(), epochs)
			}
			switch {
			case errors.Is(err, consumers.ErrForgedToken):
				forged = append(forged, i)
				continue
			case errors.Is(err, consumers.ErrStaleToken), errors.Is(err, consumers.ErrOtherLayoutToken):
				v.add(field()+".ack_token", "%s", issuedElsewhere(err))
				continue
			case err != nil:
				v.add(field()+".ack_token", "is not an ack token from ConsumeOrders or StreamOrders")
				continue
			case !mayConsume(ctx, subject.Consumer):
				return nil, nil, permissionDenied(fmt.Sprintf("%s: not allowed to ack on consumer %q", field(), subject.Consumer))
			}
			st.Ack = subject
		default:
			v.add(field()+".delivery", "a delivery_id or an ack_token is required")
			continue
		}
		key := deliveryOf(st.Ack)
		if seen[key] {
			v.add(field(), "settles the same delivery as an earlier ack of this message")
			continue
		}
		seen[key] = true
		settles = append(settles, st)
	}
	if err := v.err(); err != nil {
		return nil, nil, err
	}
	if len(forged) > 0 {
		return nil, nil, permissionDenied(fmt.Sprintf("ack token of acks[%d] was not issued by this deployment", forged[0]))
	}
	return settles, results, nil
}

// settledDelivery is what an ack settles: one event of one consumer, of
// the stream ORDERS or of its redrive stream. Two acks of one message
// that name the same one are refused; a stream sequence alone does not
// identify it (the event of one sequence goes to every consumer).
type settledDelivery struct {
	stream, consumer string
	seq              uint64
}

func deliveryOf(ack consumers.AckSubject) settledDelivery {
	return settledDelivery{stream: ack.Stream, consumer: ack.Consumer, seq: ack.StreamSeq}
}
