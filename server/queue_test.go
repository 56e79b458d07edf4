package server_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

const queueTokens = `{"tokens": [
	{"identity": "root", "token": "root-token", "permissions": ["*"]},
	{"identity": "operator", "token": "operator-token", "permissions": ["admin", "write", "consume"]},
	{"identity": "worker", "token": "worker-token", "permissions": ["read", "write", "watch", "consume"]}
]}`

// Every QueueService method is refused without "admin", to a caller
// holding every other permission, and taken with "admin" or "*".
func TestQueueServiceNeedsAdmin(t *testing.T) {
	t.Parallel()
	n := startGuardedNode(t, queueTokens, []byte("test-hmac-key-of-at-least-32-bytes!"), nil)
	calls := map[string]func(token string) error{
		"ListConsumers": func(tok string) error {
			_, err := n.queue.ListConsumers(bearer(testCtx(t), tok), &ordersv1.ListConsumersRequest{})
			return err
		},
		"GetConsumer": func(tok string) error {
			_, err := n.queue.GetConsumer(bearer(testCtx(t), tok), &ordersv1.GetConsumerRequest{Consumer: "none"})
			return err
		},
		"UpdateConsumer": func(tok string) error {
			_, err := n.queue.UpdateConsumer(bearer(testCtx(t), tok), &ordersv1.UpdateConsumerRequest{Consumer: "none",
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_deliveries"}}, MaxDeliveries: 3})
			return err
		},
		"DeleteConsumer": func(tok string) error {
			_, err := n.queue.DeleteConsumer(bearer(testCtx(t), tok), &ordersv1.DeleteConsumerRequest{Consumer: "none"})
			return err
		},
		"ListDeadLetters": func(tok string) error {
			_, err := n.queue.ListDeadLetters(bearer(testCtx(t), tok), &ordersv1.ListDeadLettersRequest{Consumer: "none"})
			return err
		},
		"RedriveDeadLetters": func(tok string) error {
			_, err := n.queue.RedriveDeadLetters(bearer(testCtx(t), tok), &ordersv1.RedriveDeadLettersRequest{Consumer: "none", All: true})
			return err
		},
		"PurgeDeadLetters": func(tok string) error {
			_, err := n.queue.PurgeDeadLetters(bearer(testCtx(t), tok), &ordersv1.PurgeDeadLettersRequest{Consumer: "none", All: true})
			return err
		},
		"RepairOrder": func(tok string) error {
			_, err := n.queue.RepairOrder(bearer(testCtx(t), tok), &ordersv1.RepairOrderRequest{OrderId: "none", ValidateOnly: true})
			return err
		},
	}
	if len(calls) != len(ordersv1.QueueService_ServiceDesc.Methods) {
		t.Fatalf("the test calls %d methods, the service has %d", len(calls), len(ordersv1.QueueService_ServiceDesc.Methods))
	}
	for name, call := range calls {
		if code := status.Code(call("worker-token")); code != codes.PermissionDenied {
			t.Errorf("%s without admin: %v, want PERMISSION_DENIED", name, code)
		}
		if code := status.Code(call("")); code != codes.Unauthenticated {
			t.Errorf("%s without a token: %v, want UNAUTHENTICATED", name, code)
		}
		for _, tok := range []string{"operator-token", "root-token"} {
			if code := status.Code(call(tok)); code == codes.PermissionDenied || code == codes.Unauthenticated {
				t.Errorf("%s with %s: %v", name, tok, code)
			}
		}
	}
}

// The reviewer's consumer order-review is reserved: "consume" is not
// enough to consume from it or to ack its deliveries; "admin" is.
func TestOrderReviewConsumerNeedsAdmin(t *testing.T) {
	t.Parallel()
	n := startGuardedNode(t, queueTokens, []byte("test-hmac-key-of-at-least-32-bytes!"), nil)
	if _, err := n.client.CreateOrder(bearer(testCtx(t), "worker-token"), validCreate("")); err != nil {
		t.Fatal(err)
	}
	review := &ordersv1.ConsumeOrdersRequest{Consumer: consumers.ReviewConsumer, Statuses: []ordersv1.OrderStatus{created}, HeartbeatInterval: dur(time.Second)}
	denied, err := n.client.ConsumeOrders(bearer(streamCtx(t), "worker-token"), review)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := denied.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ConsumeOrders on %s with consume: %v, want PERMISSION_DENIED", consumers.ReviewConsumer, err)
	}
	allowed, err := n.client.ConsumeOrders(bearer(streamCtx(t), "operator-token"), review)
	if err != nil {
		t.Fatal(err)
	}
	d := nextEvent(t, allowed)
	ack := &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: d.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK}}}
	if _, err := n.client.AckOrders(bearer(testCtx(t), "worker-token"), ack); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("AckOrders on %s with consume: %v, want PERMISSION_DENIED", consumers.ReviewConsumer, err)
	}
	res, err := n.client.AckOrders(bearer(testCtx(t), "operator-token"), ack)
	if err != nil || !res.GetResults()[0].GetConfirmed() {
		t.Fatalf("AckOrders with admin: %v %v", res, err)
	}

	// StreamOrders alike: refused with consume, and its acks by token too.
	for token, want := range map[string]codes.Code{"worker-token": codes.PermissionDenied, "operator-token": codes.OK} {
		s, err := n.client.StreamOrders(bearer(streamCtx(t), token))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&ordersv1.StreamOrdersRequest{Open: review}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if status.Code(err) != want {
			t.Fatalf("StreamOrders on %s with %s: %v, want %v", consumers.ReviewConsumer, token, err, want)
		}
	}
	other, err := n.client.StreamOrders(bearer(streamCtx(t), "worker-token"))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Send(&ordersv1.StreamOrdersRequest{Open: &ordersv1.ConsumeOrdersRequest{Consumer: "worker-queue", HeartbeatInterval: dur(time.Second)}})
	_ = other.Send(&ordersv1.StreamOrdersRequest{Acks: []*ordersv1.StreamAck{{
		Delivery: &ordersv1.StreamAck_AckToken{AckToken: d.GetAckToken()}, Action: ordersv1.AckAction_ACK_ACTION_ACK}}})
	for {
		if _, err = other.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a StreamOrders ack of %s with consume: %v, want PERMISSION_DENIED", consumers.ReviewConsumer, err)
	}
}

// A durable consumer made by ConsumeOrders is deleted by JetStream once it
// has had no client for its inactivity threshold.
func TestInactiveThresholdRemovesAnIdleConsumer(t *testing.T) {
	t.Parallel()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	n := startNodeOn(t, ns, func(o *node.ServiceOptions) {
		o.WorkQueues = consumers.WorkQueueOptions{InactiveThreshold: 2 * time.Second}
	})
	stream, cancel := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: "idle", HeartbeatInterval: dur(time.Second)})
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	if th := got.GetConsumer().GetInactiveThreshold().AsDuration(); th != 2*time.Second {
		t.Fatalf("inactive threshold %s, want 2s", th)
	}
	// While a client reads it, it stays.
	for range 4 {
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "idle"}); err != nil {
		t.Fatalf("consumer gone while read: %v", err)
	}
	cancel()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "idle"})
		if status.Code(err) == codes.NotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle consumer still there 20s after its last client left: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// --max-consumers-durable caps the durable consumers of ORDERS, the
// reviewer's included: the next one is refused with RESOURCE_EXHAUSTED,
// existing ones still serve, and deleting one makes room.
func TestDurableCapRefusesTheNextConsumer(t *testing.T) {
	t.Parallel()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	n := startNodeOn(t, ns, func(o *node.ServiceOptions) {
		o.WorkQueues = consumers.WorkQueueOptions{MaxDurables: 2}
	})
	n.create(t) // provisions the stream
	if _, err := n.js.CreateConsumer(testCtx(t), eventstore.StreamName, jetstream.ConsumerConfig{Durable: consumers.ReviewConsumer, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	open := func(name string) error {
		stream, cancel := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: name, HeartbeatInterval: dur(time.Second)})
		defer cancel()
		_, err := stream.Recv()
		return err
	}
	if err := open("first"); err != nil {
		t.Fatal(err)
	}
	if err := open("second"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third durable consumer: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := open("first"); err != nil {
		t.Fatalf("an existing consumer at the cap: %v", err)
	}
	if _, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := open("second"); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
}

// ListConsumers and GetConsumer show the consumers; UpdateConsumer changes
// settings; DeleteConsumer deletes; order-review is neither updated nor
// deleted; unknown consumers are NOT_FOUND.
func TestConsumerAdministration(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	stream, cancel := n.consume(t, limitedQueue("admin-me", 3, time.Minute))
	d := nextEvent(t, stream)
	list, err := n.queue.ListConsumers(testCtx(t), &ordersv1.ListConsumersRequest{})
	if err != nil || len(list.GetConsumers()) != 1 || list.GetConsumers()[0].GetName() != "admin-me" {
		t.Fatalf("ListConsumers: %v %v", list, err)
	}
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "admin-me"})
	if err != nil {
		t.Fatal(err)
	}
	c := got.GetConsumer()
	if c.GetMaxDeliveries() != 3 || c.GetAckWait().AsDuration() != time.Minute || len(c.GetStatuses()) != 1 || c.GetStatuses()[0] != created ||
		c.GetNumAckPending() != 1 || c.GetLastDeliveryTime() == nil || c.GetReserved() {
		t.Errorf("GetConsumer: %v", c)
	}
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
	cancel()
	upd, err := n.queue.UpdateConsumer(testCtx(t), &ordersv1.UpdateConsumerRequest{Consumer: "admin-me",
		UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"max_deliveries", "backoff", "inactive_threshold"}},
		MaxDeliveries: 5, Backoff: durs(time.Second, 5*time.Second), InactiveThreshold: dur(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c = upd.GetConsumer()
	if c.GetMaxDeliveries() != 5 || len(c.GetBackoff()) != 2 || c.GetInactiveThreshold().AsDuration() != time.Hour || c.GetAckWait().AsDuration() != time.Second {
		t.Errorf("after UpdateConsumer: %v", c)
	}
	if info := n.consumerInfo(t, "admin-me"); info.Config.MaxDeliver != 5 || info.Config.InactiveThreshold != time.Hour {
		t.Errorf("JetStream's consumer after the update: %+v", info.Config)
	}
	for name, err := range map[string]error{
		"update order-review": func() error {
			_, err := n.queue.UpdateConsumer(testCtx(t), &ordersv1.UpdateConsumerRequest{Consumer: consumers.ReviewConsumer,
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_deliveries"}}, MaxDeliveries: 1})
			return err
		}(),
		"delete order-review": func() error {
			_, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: consumers.ReviewConsumer})
			return err
		}(),
	} {
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s: %v, want FAILED_PRECONDITION", name, err)
		}
	}
	bad, err := n.queue.UpdateConsumer(testCtx(t), &ordersv1.UpdateConsumerRequest{Consumer: "admin-me",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_deliveries", "color"}}, MaxDeliveries: -1})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad update: %v %v, want INVALID_ARGUMENT", bad, err)
	}
	if _, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: "admin-me"}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error {
			_, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "admin-me"})
			return err
		}(),
		func() error {
			_, err := n.queue.DeleteConsumer(testCtx(t), &ordersv1.DeleteConsumerRequest{Consumer: "admin-me"})
			return err
		}(),
		func() error {
			_, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "admin-me", All: true})
			return err
		}(),
	} {
		if status.Code(err) != codes.NotFound {
			t.Errorf("after delete: %v, want NOT_FOUND", err)
		}
	}
}

func durs(ds ...time.Duration) []*durationpb.Duration {
	out := make([]*durationpb.Duration, len(ds))
	for i, d := range ds {
		out[i] = dur(d)
	}
	return out
}
