package systemtest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// A client that holds tokens of two deliveries of one event acks both in
// one call: on a replicated consumer both are confirmed at once (JetStream
// keeps one pending ack reply per event, so ordersd sends the ack once;
// sending both made one wait out --nats-timeout unconfirmed, found by
// TestStreamLeaderLostInThreeNodeCluster).
func TestAckTwoDeliveriesOfOneEventOnReplicatedConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster")
	}
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := nodes[0].client.CreateOrder(ctx, newClusterOrder("one")); err != nil {
		t.Fatal(err)
	}
	stream, err := nodes[1].client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: "twice", Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for len(tokens) < 2 { // the delivery, and its redelivery after the ack wait
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetEvent() != nil {
			tokens = append(tokens, res.GetAckToken())
		}
	}
	// The bug this guards against made the call wait out --nats-timeout for
	// a confirmation that never came; the call's own deadline is well past
	// that, so a regression shows as a slow or unconfirmed answer, not as
	// DEADLINE_EXCEEDED.
	callCtx, cancelCall := context.WithTimeout(ctx, 3*clusterNATSTimeout)
	defer cancelCall()
	acks := []*ordersv1.Ack{
		{AckToken: tokens[0], Action: ordersv1.AckAction_ACK_ACTION_ACK},
		{AckToken: tokens[1], Action: ordersv1.AckAction_ACK_ACTION_ACK},
	}
	start := time.Now()
	res, err := nodes[2].client.AckOrders(callCtx, &ordersv1.AckOrdersRequest{Acks: acks})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetResults()) != len(acks) {
		t.Fatalf("%d results for %d acks: %v", len(res.GetResults()), len(acks), res.GetResults())
	}
	for i, r := range res.GetResults() {
		if !r.GetConfirmed() {
			t.Errorf("ack %d not confirmed: %s", i, r.GetError())
		}
	}
	// Here the bound is the point, and it is relative to what it tells
	// apart: the old behaviour waited out --nats-timeout for a confirmation
	// that never came, so it took at least clusterNATSTimeout; a confirmed
	// R3 ack takes milliseconds, a second or two on a loaded two-core
	// machine running three race-enabled nodes, which leaves it the margin.
	if took >= clusterNATSTimeout {
		t.Errorf("acking took %v: it waited out --nats-timeout (%v) for a confirmation", took, clusterNATSTimeout)
	}
}
