package server_test

import (
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/deadletters"
	"github.com/ordersd/ordersd/internal/metrics"
	"github.com/ordersd/ordersd/internal/node"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/server"
)

// natsWithStream starts a NATS server whose account already has a stream
// of cfg, as a monitoring set-up leaves one before ordersd arrives.
func natsWithStream(t *testing.T, cfg jetstream.StreamConfig) *natsserver.Server {
	t.Helper()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly)
	if _, err := testsupport.JetStream(t, ns).CreateStream(testCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	return ns
}

// deadLettersHealth is the status of server.DeadLettersHealthService.
func (n *testNode) deadLettersHealth(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	res, err := n.health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: server.DeadLettersHealthService})
	if err != nil {
		t.Fatalf("health of %s: %v", server.DeadLettersHealthService, err)
	}
	return res.GetStatus()
}

// On a NATS whose account stores every advisory in a stream of its own
// ($JS.EVENT.ADVISORY.>), the dead-letter subjects cannot be a second
// stream's (JetStream refuses overlapping subjects): ordersd sources its
// dead letters from that stream, so the node serves, dead letters are
// recorded, listed and redriven as on a NATS of its own, and the
// advisory stream is left as it was.
func TestDeadLettersAreSourcedFromAnExistingAdvisoryStream(t *testing.T) {
	t.Parallel()
	ns := natsWithStream(t, jetstream.StreamConfig{Name: "ADVISORIES", Subjects: []string{"$JS.EVENT.ADVISORY.>"}})
	n := startNodeOn(t, ns, func(*node.ServiceOptions) {})
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	if st := n.deadLettersHealth(t); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of %s: %v, want SERVING", server.DeadLettersHealthService, st)
	}
	info, err := n.js.Stream(testCtx(t), deadletters.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; len(cfg.Subjects) != 0 || len(cfg.Sources) != 1 || cfg.Sources[0].Name != "ADVISORIES" {
		t.Errorf("%s: subjects %v, sources %+v; want none, and ADVISORIES", deadletters.Stream, cfg.Subjects, cfg.Sources)
	}

	order, next := deadLetterAfterTwoNaks(t, n, "dl-sourced")
	letters := n.awaitDeadLetters(t, "dl-sourced", 1)
	if l := letters[0]; l.GetReason() != ordersv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES || l.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() {
		t.Errorf("dead letter %v, want order %s given up after max deliveries", l, order.GetOrderId())
	}
	res, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-sourced", All: true})
	if err != nil || len(res.GetRedriven()) != 1 {
		t.Fatalf("RedriveDeadLetters: %v, %v", res, err)
	}
	if d := next(); d.GetEvent().GetOrder().GetOrderId() != order.GetOrderId() || d.GetDeliveryAttempt() != 1 {
		t.Errorf("redriven delivery: attempt %d of %s, want attempt 1 of %s", d.GetDeliveryAttempt(), d.GetEvent().GetOrder().GetOrderId(), order.GetOrderId())
	}
	if got := n.deadLetters(t, "dl-sourced"); len(got) != 0 {
		t.Errorf("dead letters after the redrive: %v", got)
	}
	advisories, err := n.js.Stream(testCtx(t), "ADVISORIES")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := advisories.CachedInfo().Config; len(cfg.Subjects) != 1 || cfg.Subjects[0] != "$JS.EVENT.ADVISORY.>" {
		t.Errorf("the advisory stream was changed: subjects %v", cfg.Subjects)
	}
}

// When other streams overlap a dead-letter subject without one holding
// all of it, dead letters cannot be recorded: the node still serves every
// other call (health SERVING), while the dead-letter health service, the
// ordersd_dead_letters_recorded metric and the dead-letter calls
// (FAILED_PRECONDITION, naming the stream in the way) say why.
func TestDeadLettersOffWhenAnotherStreamHoldsPartOfTheirSubjects(t *testing.T) {
	t.Parallel()
	ns := natsWithStream(t, jetstream.StreamConfig{Name: "REVIEW_TERMINATIONS", Subjects: []string{"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.ORDERS.order-review"}})
	reg := prometheus.NewRegistry()
	n := startNodeOn(t, ns, func(o *node.ServiceOptions) { o.Metrics = metrics.New(reg) })
	waitHealth(t, n, healthpb.HealthCheckResponse_SERVING)
	if st := n.deadLettersHealth(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of %s: %v, want NOT_SERVING", server.DeadLettersHealthService, st)
	}
	want := `
# HELP ordersd_dead_letters_recorded 1 while dead letters are recorded in ORDERS_DEAD_LETTERS; 0 while they cannot be (another stream holds their subjects: the log says which) or the node is not ready.
# TYPE ordersd_dead_letters_recorded gauge
ordersd_dead_letters_recorded 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ordersd_dead_letters_recorded"); err != nil {
		t.Error(err)
	}

	// Everything else serves: writes, reads, work queues and their acks.
	order := n.create(t)
	if _, err := n.client.GetOrder(testCtx(t), &ordersv1.GetOrderRequest{OrderId: order.GetOrderId()}); err != nil {
		t.Errorf("GetOrder: %v", err)
	}
	stream, _ := n.consume(t, limitedQueue("dl-off", 5, time.Minute))
	n.ack(t, ordersv1.AckAction_ACK_ACTION_ACK, nextEvent(t, stream).GetAckToken())
	if _, err := n.queue.GetConsumer(testCtx(t), &ordersv1.GetConsumerRequest{Consumer: "dl-off"}); err != nil {
		t.Errorf("GetConsumer: %v", err)
	}

	for name, call := range map[string]func() error{
		"ListDeadLetters": func() error {
			_, err := n.queue.ListDeadLetters(testCtx(t), &ordersv1.ListDeadLettersRequest{Consumer: "dl-off"})
			return err
		},
		"RedriveDeadLetters": func() error {
			_, err := n.queue.RedriveDeadLetters(testCtx(t), &ordersv1.RedriveDeadLettersRequest{Consumer: "dl-off", All: true})
			return err
		},
		"PurgeDeadLetters": func() error {
			_, err := n.queue.PurgeDeadLetters(testCtx(t), &ordersv1.PurgeDeadLettersRequest{Consumer: "dl-off", All: true})
			return err
		},
	} {
		err := call()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "REVIEW_TERMINATIONS") || !strings.Contains(err.Error(), "dead letters are not recorded") {
			t.Errorf("%s: %v; want FAILED_PRECONDITION naming REVIEW_TERMINATIONS", name, err)
		}
	}
}
