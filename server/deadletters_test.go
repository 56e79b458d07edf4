package server_test

import (
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// limitedQueue is a work queue of created events that gives an event up
// after maxDeliveries deliveries.
func limitedQueue(name string, maxDeliveries int32, ackWait time.Duration) *ordersv1.ConsumeOrdersRequest {
	return &ordersv1.ConsumeOrdersRequest{
		Consumer: name, Statuses: []ordersv1.OrderStatus{created}, MaxInFlight: 10,
		Settings:          &ordersv1.ConsumerSettings{AckWait: dur(ackWait), MaxDeliveries: maxDeliveries},
		HeartbeatInterval: dur(time.Second),
	}
}

// deadLetters lists every dead letter of consumer, page by page.
func (n *testNode) deadLetters(t *testing.T, consumer string) []*ordersv1.DeadLetter {
	t.Helper()
	var (
		all   []*ordersv1.DeadLetter
		token string
	)
	for {
		res, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: consumer, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatalf("ListDeadLetters(%s): %v", consumer, err)
		}
		all = append(all, res.GetDeadLetters()...)
		if token = res.GetNextPageToken(); token == "" {
			return all
		}
	}
}

// awaitDeadLetters lists consumer's dead letters until there are want of
// them (JetStream records them a moment after it gives up).
func (n *testNode) awaitDeadLetters(t *testing.T, consumer string, want int) []*ordersv1.DeadLetter {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		letters := n.deadLetters(t, consumer)
		if len(letters) >= want || time.Now().After(deadline) {
			if len(letters) != want {
				t.Fatalf("consumer %s has %d dead letters, want %d: %v", consumer, len(letters), want, letters)
			}
			return letters
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetterAfterTwoNaks makes one dead letter on consumer: an event
// delivered twice (max deliveries 2) and nak'ed twice. It returns the
// stream, still open, and the order.
func deadLetterAfterTwoNaks(t *testing.T, n *testNode, consumer string) (*ordersv1.Order, func() *ordersv1.ConsumeOrdersResponse) {
	t.Helper()
	order := n.create(t)
	stream, _ := n.consume(t, limitedQueue(consumer, 2, time.Minute))
	next := func() *ordersv1.ConsumeOrdersResponse { return nextEvent(t, stream) }
	for attempt := uint64(1); attempt <= 2; attempt++ {
		d := next()
		if d.GetDeliveryAttempt() != attempt || d.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
			t.Fatalf("delivery %d: attempt %d of %s", attempt, d.GetDeliveryAttempt(), d.GetEvent().GetOrder().GetOrderId())
		}
		n.ack(t, ordersv1.AckAction_ACK_ACTION_NAK, d.GetAckToken())
	}
	return order, next
}

// An event nak'ed at each of its max deliveries (2) becomes exactly one
// dead letter, listed with the event, the reason and the attempts, counted
// by GetConsumer and by the ordersd_dead_letters metric.
func TestMaxDeliveriesMakeOneDeadLetter(t *testing.T) {
	t.Parallel()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	reg := prometheus.NewRegistry()
	n := startNodeOn(t, ns, func(o *node.ServiceOptions) { o.Metrics = metrics.New(reg) })
	order, _ := deadLetterAfterTwoNaks(t, n, "dl-max")

	letters := n.awaitDeadLetters(t, "dl-max", 1)
	// Nothing more comes: the consumer holds the event no more, and
	// nats-server publishes its advisories in order, so once a later dead
	// letter (of another consumer) is stored, a second one of this event
	// would be too.
	waitForInfo(t, n, "dl-max", func(_, unacked uint64) bool { return unacked == 0 })
	later, _ := n.consume(t, limitedQueue("dl-max-later", 5, time.Minute))
	n.ack(t, ordersv1.AckAction_ACK_ACTION_TERM, nextEvent(t, later).GetAckToken())
	n.awaitDeadLetters(t, "dl-max-later", 1)
	letters = n.awaitDeadLetters(t, "dl-max", 1)
	l := letters[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES || l.GetDeliveryAttempts() != 2 ||
		l.GetConsumer() != "dl-max" || l.GetRedriven() || l.GetTermReason() != "" {
		t.Errorf("dead letter %v", l)
	}
	if l.GetEventSequence() != order.GetRevision() || l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() || l.GetEvent().GetSequence() != order.GetRevision() {
		t.Errorf("dead letter's event %v, want order %s at %d", l.GetEvent(), order.GetOrderId(), order.GetRevision())
	}
	if age := time.Since(l.GetDeadLetterTime().AsTime()); age < 0 || age > time.Minute {
		t.Errorf("dead letter time %v", l.GetDeadLetterTime().AsTime())
	}
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "dl-max"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetConsumer().GetDeadLetterCount() != 1 || got.GetConsumer().GetMaxDeliveries() != 2 {
		t.Errorf("GetConsumer: %v", got.GetConsumer())
	}
	want := `
# HELP ordersd_dead_letters Dead letters stored in ORDERS_DEAD_LETTERS, by consumer and reason (max_deliveries, terminated): read from JetStream at each scrape, so every node reports the deployment's count.
# TYPE ordersd_dead_letters gauge
ordersd_dead_letters{consumer="dl-max",reason="max_deliveries"} 1
ordersd_dead_letters{consumer="dl-max-later",reason="terminated"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ordersd_dead_letters"); err != nil {
		t.Error(err)
	}
}

// An event a client terminates becomes a dead letter with the client's reason.
func TestTerminatedEventIsADeadLetterWithItsReason(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order := n.create(t)
	stream, _ := n.consume(t, limitedQueue("dl-term", 5, time.Minute))
	d := nextEvent(t, stream)
	res, err := n.client.AckOrders(testCtx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{
		AckToken: d.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "warehouse has no such SKU",
	}}})
	if err != nil || !res.GetResults()[0].GetConfirmed() {
		t.Fatalf("TERM: %v %v", res, err)
	}
	l := n.awaitDeadLetters(t, "dl-term", 1)[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_TERMINATED || l.GetTermReason() != "warehouse has no such SKU" ||
		l.GetDeliveryAttempts() != 1 || l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
		t.Errorf("dead letter %v", l)
	}
}

// A redriven dead letter is delivered once more on the running stream,
// with attempts counted afresh, and acked; it leaves the dead letters,
// nothing is written to ORDERS, and it is not delivered again.
func TestRedriveDeliversOnceMoreAndAcks(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order, next := deadLetterAfterTwoNaks(t, n, "dl-redrive")
	l := n.awaitDeadLetters(t, "dl-redrive", 1)[0]
	stored := n.streamMsgs(t, "")

	res, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-redrive", Ids: []uint64{l.GetId()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetRedriven()) != 1 || res.GetRedriven()[0] != l.GetId() || len(res.GetNotFound()) != 0 {
		t.Fatalf("redrive: %v", res)
	}
	d := next()
	if d.GetEvent().GetSequence() != order.GetRevision() || d.GetDeliveryAttempt() != 1 || d.GetAckToken() == "" {
		t.Fatalf("redriven delivery: seq %d attempt %d", d.GetEvent().GetSequence(), d.GetDeliveryAttempt())
	}
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, d.GetAckToken())
	if letters := n.deadLetters(t, "dl-redrive"); len(letters) != 0 {
		t.Errorf("dead letters after the redrive: %v", letters)
	}
	if after := n.streamMsgs(t, ""); after != stored {
		t.Errorf("ORDERS holds %d messages after the redrive, %d before", after, stored)
	}
	// Redriven once: a second redrive finds nothing, and nothing comes again.
	again, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-redrive", Ids: []uint64{l.GetId()}})
	if err != nil || len(again.GetRedriven()) != 0 || len(again.GetNotFound()) != 1 {
		t.Fatalf("second redrive: %v %v", again, err)
	}
	stream, cancel := n.consume(t, &ordersv1.ConsumeOrdersRequest{Consumer: "dl-redrive", Statuses: []ordersv1.OrderStatus{created}, HeartbeatInterval: dur(time.Second)})
	defer cancel()
	for range 3 { // three heartbeats: over two redrive checks with nothing to deliver
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !m.GetHeartbeat() {
			t.Fatalf("delivered again after its ack: %v", m)
		}
	}
	got, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "dl-redrive"})
	if err != nil || got.GetConsumer().GetNumRedrivePending() != 0 || got.GetConsumer().GetDeadLetterCount() != 0 {
		t.Errorf("GetConsumer after the redrive: %v %v", got, err)
	}
	// UpdateConsumer changes the redrive consumer too.
	if _, err := n.queue.UpdateConsumer(testCtx(t), &ordersv1.UpdateConsumerRequest{Consumer: "dl-redrive",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_deliveries"}}, MaxDeliveries: 4}); err != nil {
		t.Fatal(err)
	}
	red, err := n.js.Consumer(testCtx(t), deadletters.RedriveStream, "dl-redrive")
	if err != nil || red.CachedInfo().Config.MaxDeliver != 4 {
		t.Errorf("redrive consumer after UpdateConsumer: %v", err)
	}
}

// A redriven event that fails again becomes a new dead letter, marked as
// redriven and still leading to its event; PurgeDeadLetters removes it.
func TestRedrivenEventCanDieAgainAndBePurged(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	order, next := deadLetterAfterTwoNaks(t, n, "dl-again")
	l := n.awaitDeadLetters(t, "dl-again", 1)[0]
	if _, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-again", All: true}); err != nil {
		t.Fatal(err)
	}
	for attempt := uint64(1); attempt <= 2; attempt++ {
		d := next()
		if d.GetDeliveryAttempt() != attempt || d.GetEvent().GetSequence() != order.GetRevision() {
			t.Fatalf("redriven delivery %d: attempt %d, seq %d", attempt, d.GetDeliveryAttempt(), d.GetEvent().GetSequence())
		}
		n.ack(t, ordersv1.AckAction_ACK_ACTION_NAK, d.GetAckToken())
	}
	again := n.awaitDeadLetters(t, "dl-again", 1)[0]
	if again.GetId() == l.GetId() || !again.GetRedriven() || again.GetEventSequence() != order.GetRevision() ||
		again.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
		t.Errorf("dead letter of the redrive: %v", again)
	}
	purged, err := n.queue.PurgeDeadLetters(testCtx(t), &ordersv1.PurgeDeadLettersRequest{Consumer: "dl-again", All: true})
	if err != nil || purged.GetPurged() != 1 {
		t.Fatalf("purge: %v %v", purged, err)
	}
	if letters := n.deadLetters(t, "dl-again"); len(letters) != 0 {
		t.Errorf("dead letters after the purge: %v", letters)
	}
}

// A dead letter made while no ordersd node runs (the consuming node was
// killed holding the event's last delivery; JetStream gives it up on a
// later pull by a plain NATS client) is listed by a node started afterwards:
// JetStream recorded it, not a listener in some node.
func TestDeadLetterWhileNoNodeRunsIsListedAfterwards(t *testing.T) {
	t.Parallel()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	first := startNodeOn(t, ns, func(*node.ServiceOptions) {})
	order := first.create(t)
	stream, _ := first.consume(t, limitedQueue("dl-kill", 2, time.Second))
	for attempt := uint64(1); attempt <= 2; attempt++ { // the first comes back after its ack wait
		if d := nextEvent(t, stream); d.GetDeliveryAttempt() != attempt {
			t.Fatalf("attempt %d, want %d", d.GetDeliveryAttempt(), attempt)
		}
	}
	first.kill() // holding delivery 2, the last one allowed
	if letters := first.rawDeadLetters(t); letters != 0 {
		t.Fatalf("%d dead letters before the last delivery expired", letters)
	}

	// No ordersd node runs. Once delivery 2's ack wait passes, a pull by
	// another client makes JetStream give the event up.
	cons, err := first.js.Consumer(testCtx(t), eventstore.StreamName, "dl-kill")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		t.Fatalf("delivered a third time: %s", m.Subject())
	}

	second := startNodeOn(t, ns, func(*node.ServiceOptions) {})
	l := second.awaitDeadLetters(t, "dl-kill", 1)[0]
	if l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES || l.GetDeliveryAttempts() != 2 ||
		l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
		t.Errorf("dead letter %v", l)
	}
}

// rawDeadLetters counts the messages of ORDERS_DEAD_LETTERS, read
// straight from JetStream.
func (n *testNode) rawDeadLetters(t *testing.T) uint64 {
	t.Helper()
	s, err := n.js.Stream(testCtx(t), deadletters.Stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// Bad requests are refused with INVALID_ARGUMENT, a page token of another
// consumer included.
func TestDeadLetterRequestsAreValidated(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	n.create(t)
	stream, _ := n.consume(t, limitedQueue("dl-valid", 5, time.Minute))
	n.ack(t, ordersv1.AckAction_ACK_ACTION_TERM, nextEvent(t, stream).GetAckToken(), nextEvent(t, stream).GetAckToken())
	n.awaitDeadLetters(t, "dl-valid", 2)
	first, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "dl-valid", PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", first, err)
	}
	for name, call := range map[string]func() error{
		"token of another consumer": func() error {
			_, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "other", PageToken: first.GetNextPageToken()})
			return err
		},
		"garbage token": func() error {
			_, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "dl-valid", PageToken: "x!"})
			return err
		},
		"page size": func() error {
			_, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "dl-valid", PageSize: 1001})
			return err
		},
		"consumer with a dot": func() error {
			_, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "a.b"})
			return err
		},
		"neither ids nor all": func() error {
			_, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-valid"})
			return err
		},
		"ids and all": func() error {
			_, err := n.queue.PurgeDeadLetters(testCtx(t), &ordersv1.PurgeDeadLettersRequest{Consumer: "dl-valid", Ids: []uint64{1}, All: true})
			return err
		},
	} {
		if status.Code(call()) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, call())
		}
	}
}

// startNodeOn runs one more node on ns, with its options set by tune.
func startNodeOn(t *testing.T, ns *natsserver.Server, tune func(*node.ServiceOptions)) *testNode {
	t.Helper()
	nc, err := natsconn.Connect("", ns, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return startServiceOpts(t, nc, func() (*nats.Conn, error) { return nats.Connect("", nats.InProcessServer(ns)) }, tune)
}
