package faultrun

import (
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// The run's checks find what they are there to find: an acknowledged
// write missing from the stream, a request stored twice, an event the
// work queue never got, a gap or repeat in the watch.
func TestChecksFindBrokenPromises(t *testing.T) {
	l := newLedger()
	l.created = map[string]string{"create-0-0": "o1", "create-0-1": "o2", "create-0-2": "o3"}
	l.approved = map[string]uint64{"o1": 2, "o2": 3}
	l.create.Acknowledged = 3
	s := &stored{
		lastSeq: 6,
		created: map[string][]string{
			"create-0-0": {"o1"},
			"create-0-1": {"o2", "o4"}, // stored twice
			// create-0-2 (o3) is lost
		},
		approved: map[string]int{"o1": 2}, // approved twice; o2's approval is lost
		orders:   map[string]bool{"o1": true, "o2": true, "o4": true},
	}
	q := &queueReader{seen: map[string]int{"o1": 1, "o2": 2}, confirmed: map[string]confirmedAck{
		"o1": {at: time.Now().Add(-time.Minute), attempt: 1, received: time.Now().Add(-time.Minute - time.Millisecond)},
		"o2": {at: time.Now(), attempt: 2, received: time.Now().Add(-queueAckWait)},
	}} // o4 never delivered
	n1 := &process{name: "n1"}
	q.deliver(n1, "o1", 2) // acked at once, then delivered again a minute after: lost
	q.deliver(n1, "o2", 3) // acked an ack wait after its delivery, the redelivery on its way: allowed, counted
	w := &watcher{}
	w.event(&ordersv1.OrderEvent{Sequence: 1})
	w.event(&ordersv1.OrderEvent{Sequence: 3}) // a gap
	w.event(&ordersv1.OrderEvent{Sequence: 3}) // a repeat

	sum := &Summary{Faults: map[FaultKind]*FaultStats{}}
	sum.fill(l, q, w)
	s.check(sum, l, q, w)
	sum.Stored = s.lastSeq
	if sum.Queue.AfterConfirmedAck != 2 {
		t.Errorf("%d deliveries after a confirmed ack counted, want 2", sum.Queue.AfterConfirmedAck)
	}
	if problems := strings.Join(sum.Problems, "\n"); !strings.Contains(problems, "order o1 (attempt 2) 1m0") ||
		!strings.Contains(problems, "order o2 (attempt 3)") {
		t.Errorf("the deliveries after confirmed acks are not reported with their timing:\n%s", problems)
	}
	for what, got := range map[string]int{
		"lost creates": sum.Create.Lost, "duplicated creates": sum.Create.Duplicated,
		"lost approvals": sum.Approve.Lost, "duplicated approvals": sum.Approve.Duplicated,
		"missing deliveries": sum.Queue.Missing, "watch gaps": sum.Watch.Gaps, "watch repeats": sum.Watch.Repeated,
		"lost acks": sum.Queue.LostAcks,
	} {
		if got != 1 {
			t.Errorf("%s: %d, want 1", what, got)
		}
	}
	failures := strings.Join(sum.Failures(), "\n")
	for _, want := range []string{"acknowledged creates lost", "stored twice", "approved twice", "never delivered", "gaps", "sent twice", "ended at sequence 3 of 6", "1 confirmed acks lost"} {
		if !strings.Contains(failures, want) {
			t.Errorf("failures do not mention %q:\n%s", want, failures)
		}
	}

	// And a clean run passes.
	clean := &Summary{Faults: map[FaultKind]*FaultStats{}, Stored: 3, Create: OpStats{Acknowledged: 3}, Watch: WatchStats{LastSeq: 3}}
	if f := clean.Failures(); len(f) != 0 {
		t.Errorf("a clean run fails: %v", f)
	}
}

// A confirmed ack delivered again is reported as lost across a leader
// change only when its confirmation lies near a fault that stopped,
// killed or cut off a JetStream node; the same delivery far from any such fault is a
// lost ack, which fails the run.
func TestLostAcksNearALeaderFaultAreToldApart(t *testing.T) {
	faultAt := time.Now().Add(-time.Hour)
	c := &cluster{}
	c.noteLeaderFault(faultAt)(faultAt.Add(10 * time.Second))
	q := &queueReader{c: c, seen: map[string]int{"near": 1, "far": 1}, confirmed: map[string]confirmedAck{
		"near": {at: faultAt.Add(-100 * time.Millisecond), attempt: 1, received: faultAt.Add(-130 * time.Millisecond)},
		"far":  {at: faultAt.Add(time.Minute), attempt: 1, received: faultAt.Add(time.Minute - 30*time.Millisecond)},
	}}
	n1 := &process{name: "n1"}
	q.deliver(n1, "near", 2)
	q.deliver(n1, "far", 2)
	if q.stats.AcrossLeaderChange != 1 || q.stats.LostAcks != 1 {
		t.Fatalf("across a leader change %d, lost %d; want 1 and 1", q.stats.AcrossLeaderChange, q.stats.LostAcks)
	}
	if len(q.afterConfirmed) != 1 || !strings.Contains(q.afterConfirmed[0], "across a leader change") ||
		len(q.lostAcks) != 1 || !strings.Contains(q.lostAcks[0], ": a lost ack") {
		t.Errorf("the deliveries are not reported as what they are:\nallowed:\n%s\nlost:\n%s", strings.Join(q.afterConfirmed, "\n"), strings.Join(q.lostAcks, "\n"))
	}
}
