package main

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
	callCtx, cancelCall := context.WithTimeout(ctx, 10*time.Second)
	defer cancelCall()
	start := time.Now()
	res, err := nodes[2].client.AckOrders(callCtx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{
		{AckToken: tokens[0], Action: ordersv1.AckAction_ACK_ACTION_ACK},
		{AckToken: tokens[1], Action: ordersv1.AckAction_ACK_ACTION_ACK},
	}})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.GetResults() {
		if !r.GetConfirmed() {
			t.Errorf("ack %d not confirmed: %s", i, r.GetError())
		}
	}
	if took > 2*time.Second {
		t.Errorf("acking took %v", took)
	}
}
