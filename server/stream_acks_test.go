package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// One message of a StreamOrders stream may not settle one delivery twice,
// however many acks of other deliveries of the same stream sequence (an
// event delivered to another consumer too) stand between the two: the
// message is refused whole, and nothing of it is acked.
func TestStreamOrdersRefusesOneDeliverySettledTwiceInAMessage(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.createMany(t, 1)
	first := func(consumer string) (orderStream, *ordersv1.StreamDelivery) {
		open := createdQueue(consumer)
		open.MaxInFlight = 1
		stream, _ := n.streamOrders(t, open)
		return stream, nextResponse(t, stream).GetDeliveries()[0]
	}
	stream, mine := first("twice-a")
	_, other := first("twice-b")
	if mine.GetEvent().GetSequence() != other.GetEvent().GetSequence() {
		t.Fatalf("the consumers got sequences %d and %d, want one event", mine.GetEvent().GetSequence(), other.GetEvent().GetSequence())
	}
	ack := ordersv1.AckAction_ACK_ACTION_ACK
	if err := stream.Send(&ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{
		{Delivery: &ordersv1.StreamAck_DeliveryId{DeliveryId: mine.GetDeliveryId()}, Action: ack},
		{Delivery: &ordersv1.StreamAck_AckToken{AckToken: other.GetAckToken()}, Action: ack},
		{Delivery: &ordersv1.StreamAck_AckToken{AckToken: mine.GetAckToken()}, Action: ack},
	}}); err != nil {
		t.Fatal(err)
	}
	for {
		res, err := stream.Recv()
		if err == nil && len(res.GetAckResults()) > 0 {
			t.Fatalf("the acks were applied: %v; want the message refused", res.GetAckResults())
		}
		if err != nil {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "acks[2]: settles the same delivery as an earlier ack") {
				t.Fatalf("stream ended with %v, want INVALID_ARGUMENT naming acks[2]", err)
			}
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // an ack sent by mistake would have landed
	for _, consumer := range []string{"twice-a", "twice-b"} {
		if info := n.consumerInfo(t, consumer); info.NumAckPending != 1 || info.AckFloor.Stream != 0 {
			t.Errorf("%s after the refused message: %d unacked, ack floor %d; want 1 and 0", consumer, info.NumAckPending, info.AckFloor.Stream)
		}
	}
}
