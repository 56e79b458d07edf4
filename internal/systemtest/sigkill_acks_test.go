package systemtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// confirmedAcksBatch is how many deliveries the SIGKILL tests ack with
// confirmation right before the kill.
const confirmedAcksBatch = 500

// On one embedded node a confirmed ack is in the consumer's memory, and
// nats-server writes the consumer's state file at most every 100 ms
// (consumers.ConsumerStateFlushInterval): ordersd is SIGKILLed at once
// after 500 acks were confirmed, and after the restart on the same data
// the consumer delivers those events again, each with a delivery attempt
// that may be 1. The test prints how many came back; the docs promise no
// more than every ack confirmed within the flush interval before the kill
// ("Confirmed acks and crashes"), which here is all of them. Killed after
// a pause of a few flush intervals instead, the node redelivers none.
func TestSIGKILLRightAfterConfirmedAcksOnOneNode(t *testing.T) {
	for _, pause := range []time.Duration{0, 3 * consumers.ConsumerStateFlushInterval} {
		t.Run(fmt.Sprintf("killed %v after the confirmations", pause), func(t *testing.T) {
			dataDir := t.TempDir()
			natsAddr := freePorts(t, 1)[0]
			flags := []string{"--nats-listen", natsAddr, "--nats-listen-token", "inspect"}
			child := startChild(t, dataDir, flags...)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			createOrders(ctx, t, child.client, confirmedAcksBatch)
			tokens := deliverAll(ctx, t, child.client, "sigkill", confirmedAcksBatch)
			confirmedAt := ackConfirmed(ctx, t, child.client, tokens)
			time.Sleep(pause)
			if err := child.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killedAfter := time.Since(confirmedAt)
			<-child.exited
			child.exited <- nil // for the cleanup

			restarted := startChild(t, dataDir, flags...)
			unsettled := unsettledOf(ctx, t, "nats://"+natsAddr, "sigkill")
			t.Logf("one node, SIGKILL %v after %d acks were confirmed: %d of them unsettled after the restart",
				killedAfter.Round(time.Millisecond), len(tokens), unsettled)
			if killedAfter >= consumers.ConsumerStateFlushInterval+flushMargin {
				if unsettled != 0 {
					t.Errorf("killed %v after the confirmations (past the %v flush interval): %d confirmed acks lost, want 0",
						killedAfter, consumers.ConsumerStateFlushInterval, unsettled)
				}
				return
			}
			if unsettled == 0 {
				t.Log("every ack reached the state file before the kill: this run did not hit the window")
				return
			}
			// Those that came back say so only by being delivered again: a
			// delivery whose own state was lost with the ack comes as attempt 1.
			attempts := redeliveries(ctx, t, restarted.client, "sigkill", unsettled)
			t.Logf("the %d confirmed acks redelivered came with delivery attempts %v", unsettled, attempts)
		})
	}
}

// flushMargin is what a state write may take on a loaded machine beyond
// the flush interval.
const flushMargin = 200 * time.Millisecond

// On a three-node cluster a confirmed ack is stored by a quorum of the
// consumer's Raft group before JetStream answers: the consumer leader's
// node is SIGKILLed at once after 500 acks were confirmed, the consumer
// gets a new leader on a survivor, and none of the 500 is delivered again.
func TestSIGKILLRightAfterConfirmedAcksInThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-node JetStream cluster of ordersd processes")
	}
	nodes := startChildCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	createOrders(ctx, t, nodes[0].client, confirmedAcksBatch)
	tokens := deliverAll(ctx, t, nodes[0].client, "sigkill", confirmedAcksBatch)

	nc, err := nodes[0].nats()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(ctx, eventstore.StreamName, "sigkill")
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	leaderName := cons.CachedInfo().Cluster.Leader
	var leader, survivor *clusterNode
	for _, n := range nodes {
		if n.name == leaderName {
			leader = n
		} else {
			survivor = n
		}
	}
	if leader == nil {
		t.Fatalf("consumer leader %q is none of the nodes", leaderName)
	}
	confirmedAt := ackConfirmed(ctx, t, survivor.client, tokens)
	if err := leader.kill(); err != nil {
		t.Fatal(err)
	}
	killedAfter := time.Since(confirmedAt)

	nc, err = survivor.nats()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	unsettled := unsettledOn(ctx, t, nc, "sigkill", leaderName)
	t.Logf("three nodes, consumer leader %s SIGKILLed %v after %d acks were confirmed: %d of them unsettled on the new leader",
		leaderName, killedAfter.Round(time.Millisecond), len(tokens), unsettled)
	if unsettled != 0 {
		t.Errorf("%d confirmed acks lost with the consumer leader, want 0", unsettled)
	}
}

// createOrders creates n orders in one CreateOrders stream.
func createOrders(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, n int) {
	t.Helper()
	stream, err := client.CreateOrders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		req := &ordersv1.CreateOrdersRequest{Order: &ordersv1.CreateOrderRequest{
			RequestId: fmt.Sprintf("sigkill-%d", i), CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}}}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for range n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetError() != nil {
			t.Fatalf("create: %v", res.GetError())
		}
	}
}

// deliverAll opens ConsumeOrders on consumer and returns the ack tokens of
// its first n deliveries, then ends the stream (the deliveries stay
// pending: their ack wait is long).
func deliverAll(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, consumer string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: consumer, Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight: int32(n), Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(2 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for len(tokens) < n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetEvent() != nil {
			tokens = append(tokens, res.GetAckToken())
		}
	}
	return tokens
}

// ackConfirmed acks every token in one AckOrders call, checks that each
// ack was confirmed, and returns when the answer came.
func ackConfirmed(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, tokens []string) time.Time {
	t.Helper()
	req := &ordersv1.AckOrdersRequest{}
	for _, token := range tokens {
		req.Acks = append(req.Acks, &ordersv1.Ack{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_ACK})
	}
	res, err := client.AckOrders(ctx, req)
	confirmedAt := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.GetResults() {
		if !r.GetConfirmed() {
			t.Fatalf("ack %d not confirmed: %s", i, r.GetError())
		}
	}
	return confirmedAt
}

// unsettledOf connects to the node's NATS listener and returns how many
// events consumer will deliver again (see unsettledOn).
func unsettledOf(ctx context.Context, t *testing.T, url, consumer string) int {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token("inspect"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return unsettledOn(ctx, t, nc, consumer, "")
}

// unsettledOn returns how many events of the stream consumer holds as not
// acked: those delivered and pending, and those it no longer knows it
// delivered. It waits for a consumer leader other than notLeader.
func unsettledOn(ctx context.Context, t *testing.T, nc *nats.Conn, consumer, notLeader string) int {
	t.Helper()
	js, _ := jetstream.New(nc)
	var info *jetstream.ConsumerInfo
	ok := waitFor(60*time.Second, func() bool {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cons, err := js.Consumer(callCtx, eventstore.StreamName, consumer)
		if err != nil {
			return false
		}
		info = cons.CachedInfo()
		return info.Cluster == nil || (info.Cluster.Leader != "" && info.Cluster.Leader != notLeader)
	})
	if !ok {
		t.Fatalf("consumer %s has no leader after 60s (last info %+v)", consumer, info)
	}
	return info.NumAckPending + int(info.NumPending)
}

// redeliveries consumes n events of consumer and returns how many came
// with each delivery attempt.
func redeliveries(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, consumer string, n int) map[uint64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{
		Consumer: consumer, Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight: int32(n), Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(2 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	attempts := map[uint64]int{}
	for got := 0; got < n; {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d of %d redeliveries: %v", got, n, err)
		}
		if res.GetEvent() != nil {
			attempts[res.GetDeliveryAttempt()]++
			got++
		}
	}
	return attempts
}
