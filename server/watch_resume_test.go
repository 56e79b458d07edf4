package server_test

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// nodeOn runs one more ordersd node on the NATS server ns.
func nodeOn(t *testing.T, ns *natsserver.Server) *testNode {
	t.Helper()
	nc, err := natsconn.Connect("", ns, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return startService(t, nc, func() (*nats.Conn, error) { return nats.Connect("", nats.InProcessServer(ns)) })
}

// resumeReader follows a watch across reconnects, as a client that keeps
// the resume_position of the last response it handled: it checks that
// every response carries one and that events come one sequence after the
// other, each once.
type resumeReader struct {
	t        *testing.T
	position string // of the last response read; "" before the first
	last     uint64 // sequence of the last event read
	streams  int
}

// read opens a watch on n after the position (every stored event before
// the first) and reads until it has read budget events or reached until;
// with a budget of 0, until its caught_up.
func (r *resumeReader) read(n *testNode, budget int, until uint64) {
	r.t.Helper()
	req := &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}, HeartbeatInterval: dur(time.Second)}
	if r.position != "" {
		req.Start = &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: r.position}
	}
	stream, cancel := n.watch(r.t, req)
	defer cancel()
	r.streams++
	toCaughtUp := budget == 0
	for (budget > 0 || toCaughtUp) && r.last < until {
		res, err := stream.Recv()
		if err != nil {
			r.t.Fatalf("after sequence %d (stream %d): %v", r.last, r.streams, err)
		}
		if res.GetResumePosition() == "" {
			r.t.Fatalf("a response without a resume_position: %v", res)
		}
		if ev := res.GetEvent(); ev != nil {
			if ev.GetSequence() != r.last+1 {
				r.t.Fatalf("stream %d: got sequence %d after %d", r.streams, ev.GetSequence(), r.last)
			}
			r.last = ev.GetSequence()
			budget--
		}
		r.position = res.GetResumePosition()
		if toCaughtUp && res.GetCaughtUp() {
			return
		}
	}
}

// A watcher that hangs up and resumes after the resume_position of the
// last response it got (a replayed event, a live one, a caught_up), again
// and again, on one node and then another, while events are written, and
// then once more after every node and the NATS server itself restarted,
// sees exactly the stream: every sequence, in order, once. The position is
// the stream's, not the node's.
func TestWatchResumesAfterItsPositionAcrossNodesAndARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := testsupport.StartNATS(t, testsupport.InProcessOnly, testsupport.StoreDir(dir))
	nodes := []*testNode{nodeOn(t, ns), nodeOn(t, ns)}
	const stored, total = 600, 2000
	nodes[0].storeMany(t, stored) // replayed, before the live events
	written := make(chan struct{})
	go func() {
		defer close(written)
		nodes[0].storeMany(t, total-stored)
	}()
	r := &resumeReader{t: t}
	for i := 0; r.last < total; i++ {
		budget := 1 + rand.IntN(200)
		if i%4 == 3 {
			budget = 0 // hang up at caught_up
		}
		r.read(nodes[i%2], budget, total)
	}
	<-written
	if r.streams < 4 {
		t.Errorf("only %d streams; the test wants several on each node", r.streams)
	}

	// Every node and the NATS server go away; all start again on the same
	// data, and more events are written while the watcher resumes.
	for _, n := range nodes {
		n.kill()
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	again := nodeOn(t, testsupport.StartNATS(t, testsupport.InProcessOnly, testsupport.StoreDir(dir)))
	const more = 500
	var wg sync.WaitGroup
	wg.Go(func() { again.storeMany(t, more) })
	for r.last < total+more {
		r.read(again, 50+rand.IntN(200), total+more)
	}
	wg.Wait()
	if got := again.streamMsgs(t, ""); got != total+more {
		t.Fatalf("stream holds %d events, watcher saw %d", got, r.last)
	}
}

// watchRefusal is the error a watch ends with before it sends anything.
func watchRefusal(t *testing.T, n *testNode, req *ordersv1.WatchOrdersRequest) error {
	t.Helper()
	stream, err := n.client.WatchOrders(testCtx(t), req)
	if err != nil {
		return err
	}
	res, err := stream.Recv()
	if err == nil {
		t.Fatalf("the watch sent %v; want it refused before anything", res)
	}
	return err
}

// resumeAfterViolation is the description of the field violation of
// resume_after in err, which must be INVALID_ARGUMENT.
func resumeAfterViolation(t *testing.T, err error) string {
	t.Helper()
	assertFieldViolation(t, err, "resume_after")
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == "resume_after" {
					return v.GetDescription()
				}
			}
		}
	}
	return ""
}

// caughtUpPosition is the resume_position of the caught_up of a watch of
// every stored event.
func caughtUpPosition(t *testing.T, n *testNode) string {
	t.Helper()
	stream, cancel := n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
	defer cancel()
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetCaughtUp() {
			return res.GetResumePosition()
		}
	}
}

// A resume position that was altered (any byte flipped), truncated,
// lengthened, made up, or sealed with another deployment's key is refused
// with INVALID_ARGUMENT naming resume_after, before anything is sent:
// never taken for a start from the beginning.
func TestWatchRefusesAlteredOrForeignResumePositions(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	good := caughtUpPosition(t, n)
	raw, err := base64.RawURLEncoding.DecodeString(good)
	if err != nil {
		t.Fatalf("resume_position %q is not URL-safe base64: %v", good, err)
	}
	epoch, err := n.store.Epoch(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := consumers.NewAckTokens([]byte("another-deployment-key-0123456789abc"))
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"truncated":                   good[:len(good)-2],
		"lengthened":                  good + "AA",
		"garbage":                     "garbage",
		"of another deployment's key": consumers.NewResumePositions(otherKey).Seal(consumers.Position{Epoch: epoch, Sequence: 1}),
	}
	for _, i := range []int{0, 1, 2, 10, len(raw) - 17, len(raw) - 1} { // version, count, epoch, sequence, MAC
		altered := append([]byte(nil), raw...)
		altered[i] ^= 0x04
		refused["byte "+strings.Repeat("I", i%8+1)+" flipped"] = base64.RawURLEncoding.EncodeToString(altered)
	}
	for name, position := range refused {
		t.Run(name, func(t *testing.T) {
			err := watchRefusal(t, n, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: position}})
			if d := resumeAfterViolation(t, err); !strings.Contains(d, "not a resume position this deployment issued") {
				t.Fatalf("resume_after refused with %q", d)
			}
		})
	}
}

// After the stream ORDERS is deleted and provisioned anew (as after a
// migration, its sequences start again), a resume position of the old
// stream is refused with INVALID_ARGUMENT that says so and what to do,
// before anything is sent.
func TestWatchRefusesAPositionOfARecreatedStream(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.create(t)
	n.create(t)
	old := caughtUpPosition(t, n)
	before, err := n.store.Epoch(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}

	if err := n.js.DeleteStream(testCtx(t), eventstore.StreamName); err != nil {
		t.Fatal(err)
	}
	waitStream(t, n)
	deadline := time.Now().Add(10 * time.Second)
	for { // the node's health checks look the stream up again
		epoch, err := n.store.Epoch(testCtx(t))
		if err == nil && epoch != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still serves the epoch of the deleted stream: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.create(t)

	err = watchRefusal(t, n, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ResumeAfter{ResumeAfter: old}})
	d := resumeAfterViolation(t, err)
	if !strings.Contains(d, "earlier incarnation of the stream ORDERS") || !strings.Contains(d, "replay_all") {
		t.Fatalf("a position of the deleted stream refused with %q; want it named stale, with what to do", d)
	}
	if !strings.Contains(status.Convert(err).Message(), d) {
		t.Errorf("the message %q does not say what the violation says", status.Convert(err).Message())
	}
}
