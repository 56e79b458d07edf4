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
	now := time.Now()
	q := &queueReader{seen: map[string]int{"o1": 1, "o2": 2}, confirmed: map[string]confirmedAck{
		"o1": {at: now.Add(-time.Minute), attempt: 1, received: now.Add(-time.Minute - time.Millisecond)},
		"o2": {at: now, attempt: 2, received: now.Add(-queueAckWait)},
	}} // o4 never delivered
	sends := NewSendLog("ORDERS", queueConsumer)
	sends.record(sendKey{1, 2}, now.Add(-time.Second))      // o1's attempt 2, sent a minute after the confirmation
	sends.record(sendKey{2, 3}, now.Add(-time.Millisecond)) // o2's attempt 3, sent before the confirmation
	n1 := &process{name: "n1"}
	q.deliver(n1, "o1", 1, 2) // acked at once, then sent again a minute after: lost
	q.deliver(n1, "o2", 2, 3) // its redelivery sent before the ack was confirmed: raced, counted
	q.classifyAfterAck(sends, newLeaderLog("ORDERS", queueConsumer))
	w := &watcher{}
	w.event(&ordersv1.OrderEvent{Sequence: 1})
	w.event(&ordersv1.OrderEvent{Sequence: 3}) // a gap
	w.event(&ordersv1.OrderEvent{Sequence: 3}) // a repeat

	sum := &Summary{Faults: map[FaultKind]*FaultStats{}}
	sum.fill(l, q, w)
	s.check(sum, l, q, w)
	sum.Stored = s.lastSeq
	if sum.Queue.AfterConfirmedAck != 2 || sum.Queue.Raced != 1 {
		t.Errorf("%d deliveries after a confirmed ack counted, %d raced; want 2 and 1", sum.Queue.AfterConfirmedAck, sum.Queue.Raced)
	}
	if problems := strings.Join(sum.Problems, "\n"); !strings.Contains(problems, "order o1 (sequence 1, attempt 2) 1m0") ||
		!strings.Contains(problems, "order o2 (sequence 2, attempt 3)") {
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

// Each delivery after a confirmed ack is classified by what JetStream
// sent and when its consumer leaders were elected, not by the client's
// timing: raced only if that very delivery (a later attempt) went out
// before the confirmation; allowed only if a consumer leader was elected
// after the confirmation and no later than the resend; lost otherwise.
func TestDeliveriesAfterConfirmedAcksAreToldApart(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	ack := confirmedAck{at: t0, by: "n2", attempt: 1, received: t0.Add(-10 * time.Millisecond)}
	sends := NewSendLog("ORDERS", queueConsumer)
	leaders := newLeaderLog("ORDERS", queueConsumer)
	cases := []struct {
		name    string
		attempt uint64
		sentAt  []time.Duration // after the confirmation; none: its send not seen
		elected []time.Duration // elections, after the confirmation
		want    string          // raced, allowed or lost
	}{
		{"sent before the confirmation", 2, []time.Duration{-time.Millisecond}, nil, "raced"},
		{"long after the ack wait, sent late", 2, []time.Duration{time.Minute}, nil, "lost"},
		{"same attempt sent before, resent after", 1, []time.Duration{-time.Second, time.Second}, nil, "lost"},
		{"elected after the confirmation, before the resend", 2, []time.Duration{2 * time.Second}, []time.Duration{time.Second}, "allowed"},
		{"elected before the confirmation", 2, []time.Duration{2 * time.Second}, []time.Duration{-time.Millisecond}, "lost"},
		{"elected after the resend", 2, []time.Duration{2 * time.Second}, []time.Duration{3 * time.Second}, "lost"},
		{"send not seen, elected before it came", 2, nil, []time.Duration{time.Second}, "allowed"},
	}
	q := &queueReader{seen: map[string]int{}, confirmed: map[string]confirmedAck{}}
	n1 := &process{name: "n1"}
	for i, c := range cases {
		seq := uint64(i+1) * 1000 // far apart: each case has its own hour
		base := ack
		base.at = t0.Add(time.Duration(i) * time.Hour)
		q.confirmed[c.name] = base
		for _, d := range c.sentAt {
			sends.record(sendKey{seq, c.attempt}, base.at.Add(d))
		}
		for _, d := range c.elected {
			leaders.record(election{at: base.at.Add(d), leader: "n3"})
		}
		q.deliver(n1, c.name, seq, c.attempt)
		q.afterAck[i].received = base.at.Add(5 * time.Second)
	}
	q.classifyAfterAck(sends, leaders)
	want := map[string]int{}
	for _, c := range cases {
		want[c.want]++
	}
	if q.stats.Raced != want["raced"] || q.stats.AcrossElection != want["allowed"] || q.stats.LostAcks != want["lost"] {
		t.Errorf("raced %d, allowed across an election %d, lost %d; want %d, %d, %d\nallowed:\n%s\nlost:\n%s",
			q.stats.Raced, q.stats.AcrossElection, q.stats.LostAcks, want["raced"], want["allowed"], want["lost"],
			strings.Join(q.afterConfirmed, "\n"), strings.Join(q.lostAcks, "\n"))
	}
	for _, c := range cases {
		found := ""
		for _, r := range q.afterConfirmed {
			if strings.Contains(r, "order "+c.name+" ") {
				found = "raced"
				if strings.Contains(r, "elected between") {
					found = "allowed"
				}
			}
		}
		for _, r := range q.lostAcks {
			if strings.Contains(r, "order "+c.name+" ") {
				found = "lost"
			}
		}
		if found != c.want {
			t.Errorf("%s: reported as %q, want %q", c.name, found, c.want)
		}
	}
}
