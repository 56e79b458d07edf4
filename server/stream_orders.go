package server

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// StreamOrders implements ordersv1.OrderServiceServer.
func (s *OrderService) StreamOrders(stream grpc.BidiStreamingServer[ordersv1.StreamOrdersRequest, ordersv1.StreamOrdersResponse]) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	var v violations
	if first.GetOpen() == nil {
		v.add("open", "is required on the first message of the stream")
	}
	if len(first.GetAcks()) > 0 {
		v.add("acks", "are not allowed on the first message: nothing was delivered yet")
	}
	if err := v.err(); err != nil {
		return err
	}
	spec, ctx, end, err := s.beginConsume(stream.Context(), first.GetOpen())
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := context.WithCancel(ctx) // bad input on the acks ends the deliveries
	defer cancel()

	out := &streamSender{stream: stream}
	defer out.close()
	sess := s.WorkQueues.NewSession(spec)
	acks := &streamAcks{s: s, sess: sess, out: out, readyCh: make(chan struct{}, 1)}
	acks.pipe, err = s.Acker.Pipeline(acks.done)
	if err != nil {
		return toStatus(ctx, s.log, "", err)
	}
	stopResults := make(chan struct{})
	resultsSent := make(chan struct{})
	go func() {
		defer close(resultsSent)
		acks.sendResults(stopResults)
	}()
	defer func() { // every ack's result is sent before the call returns
		acks.pipe.Close()
		close(stopResults)
		<-resultsSent
	}()
	received := make(chan error, 1)
	go func() {
		// A client that closes its side (io.EOF) sends no more acks, but
		// its deliveries go on until it cancels: only bad input ends the
		// stream from here.
		if err := acks.receive(ctx, stream); err != nil {
			received <- err
			cancel()
		}
	}()
	err = sess.Run(ctx, func(d consumers.Delivery) error {
		return out.send(&ordersv1.StreamOrdersResponse{Heartbeat: true})
	}, func(batch []consumers.Delivery) error {
		return out.send(deliveriesResponse(batch))
	})
	select {
	case rerr := <-received: // bad input, or the client's side broke
		return rerr
	default:
	}
	return toStatus(ctx, s.log, "", err)
}

// streamSender serializes the sends of a StreamOrders stream (deliveries
// and ack results come from different goroutines) and stops them once the
// call returns.
type streamSender struct {
	mu     sync.Mutex
	stream grpc.BidiStreamingServer[ordersv1.StreamOrdersRequest, ordersv1.StreamOrdersResponse]
	closed bool
}

var errStreamClosed = errors.New("stream closed")

func (o *streamSender) send(res *ordersv1.StreamOrdersResponse) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errStreamClosed
	}
	return o.stream.Send(res)
}

func (o *streamSender) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// deliveriesResponse builds one response of a batch. Events read from the
// stream are forwarded as stored (eventstore.RawEvent): the response is
// written in wire form and handed to gRPC as the message's unknown fields,
// which proto.Marshal copies as they are, and the client decodes as the
// deliveries field.
func deliveriesResponse(batch []consumers.Delivery) *ordersv1.StreamOrdersResponse {
	size := 0
	for _, d := range batch {
		size += 64 + len(d.Raw.Order) + len(d.AckToken)
	}
	b := make([]byte, 0, size)
	var one []byte
	for _, d := range batch {
		one = appendDelivery(one[:0], d)
		b = protowire.AppendTag(b, deliveriesField, protowire.BytesType)
		b = protowire.AppendBytes(b, one)
	}
	res := &ordersv1.StreamOrdersResponse{}
	res.ProtoReflect().SetUnknown(b)
	return res
}

// Field numbers of StreamOrdersResponse and StreamDelivery, read from the
// generated descriptors so that proto/ stays their one source.
var (
	deliveriesField      = eventstore.FieldNumber(&ordersv1.StreamOrdersResponse{}, "deliveries")
	deliveryIDField      = eventstore.FieldNumber(&ordersv1.StreamDelivery{}, "delivery_id")
	deliveryEventField   = eventstore.FieldNumber(&ordersv1.StreamDelivery{}, "event")
	deliveryAttemptField = eventstore.FieldNumber(&ordersv1.StreamDelivery{}, "delivery_attempt")
	deliveryPendingField = eventstore.FieldNumber(&ordersv1.StreamDelivery{}, "num_pending")
	deliveryTokenField   = eventstore.FieldNumber(&ordersv1.StreamDelivery{}, "ack_token")
)

// appendDelivery appends the wire form of d's StreamDelivery.
func appendDelivery(b []byte, d consumers.Delivery) []byte {
	b = protowire.AppendTag(b, deliveryIDField, protowire.VarintType)
	b = protowire.AppendVarint(b, d.ID)
	b = protowire.AppendTag(b, deliveryEventField, protowire.BytesType)
	if d.Event != nil { // decoded already (a redriven dead letter)
		ev, _ := proto.Marshal(d.Event) // cannot fail: it was just decoded
		b = protowire.AppendBytes(b, ev)
	} else {
		b = protowire.AppendBytes(b, d.Raw.AppendOrderEvent(nil))
	}
	if d.Attempt != 0 {
		b = protowire.AppendTag(b, deliveryAttemptField, protowire.VarintType)
		b = protowire.AppendVarint(b, d.Attempt)
	}
	if d.NumPending != 0 {
		b = protowire.AppendTag(b, deliveryPendingField, protowire.VarintType)
		b = protowire.AppendVarint(b, d.NumPending)
	}
	if d.AckToken != "" {
		b = protowire.AppendTag(b, deliveryTokenField, protowire.BytesType)
		b = protowire.AppendString(b, d.AckToken)
	}
	return b
}
