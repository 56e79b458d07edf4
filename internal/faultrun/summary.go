package faultrun

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Summary is what a run did and found.
type Summary struct {
	Duration time.Duration             `json:"duration"`
	Seed     uint64                    `json:"seed"`
	Replicas int                       `json:"replicas"`
	Faults   map[FaultKind]*FaultStats `json:"faults"`
	Create   OpStats                   `json:"create"`
	Approve  OpStats                   `json:"approve"`
	Queue    QueueStats                `json:"work_queue"`
	Watch    WatchStats                `json:"watch"`
	Stored   uint64                    `json:"stored_events"`
	// LongestWait is the longest a retrying client waited for one
	// operation, from its first attempt to its acknowledgement.
	LongestWait time.Duration `json:"longest_wait"`
	// LongestNoAck is the longest time no client got any write
	// acknowledged: the worst unavailability window of the whole service.
	LongestNoAck time.Duration `json:"longest_without_ack"`
	// Balancing is how the writers picked a process for each call.
	Balancing Balancing `json:"balancing"`
	// Processes names the run's processes: nodes, then replicas.
	Processes []string `json:"processes"`
	// Traffic is where the write calls went, before, during and after
	// each fault.
	Traffic []PhaseTraffic `json:"traffic"`
	// Problems describe each thing found wrong, and the first unexpected
	// errors.
	Problems []string `json:"problems"`
}

func (s *Summary) note(format string, args ...any) {
	if len(s.Problems) < 50 {
		s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
	}
}

// attributeOutages gives each fault kind the longest outage that
// overlapped a fault of that kind.
func (s *Summary) attributeOutages(faults []fault, outages []outage) {
	for _, f := range faults {
		for _, o := range outages {
			if o.from.Before(f.recovered) && o.to.After(f.at) {
				st := s.Faults[f.kind]
				st.LongestOutage = max(st.LongestOutage, o.to.Sub(o.from))
			}
		}
	}
}

// fill copies the clients' figures into the summary.
func (s *Summary) fill(l *ledger, q *queueReader, w *watcher) {
	s.Create, s.Approve = l.create, l.approve
	s.LongestWait, s.LongestNoAck = l.longestWait, l.longestNoAck
	s.Queue, s.Watch = q.stats, w.stats
	for _, d := range append(q.lostAcks, q.afterConfirmed...) {
		s.note("delivered after a confirmed ack: %s", d)
	}
	for _, errs := range [][]string{l.errors, q.errors, w.errors} {
		for _, e := range errs {
			s.note("unexpected error: %s", e)
		}
	}
}

// Failures lists every broken promise: lost or duplicated writes, events
// the work queue or the watcher missed, streams that stalled, and errors
// a retry cannot fix. An empty list is a passing run.
func (s *Summary) Failures() []string {
	var f []string
	count := func(n int, what string) {
		if n > 0 {
			f = append(f, fmt.Sprintf("%d %s", n, what))
		}
	}
	count(s.Create.Lost, "acknowledged creates lost")
	count(s.Create.Duplicated, "create requests stored twice")
	count(s.Approve.Lost, "acknowledged approvals lost")
	count(s.Approve.Duplicated, "orders approved twice")
	count(s.Create.Unexpected+s.Approve.Unexpected, "writes failed with a status a retry cannot fix")
	count(s.Queue.Missing, "created events never delivered to the work queue")
	count(s.Queue.LostAcks, "confirmed acks lost (events delivered again after their ack was confirmed)")
	count(s.Queue.Stalls+s.Watch.Stalls, "streams stalled without a status")
	count(s.Queue.Unexpected+s.Watch.Unexpected, "streams or acks ended with a status a retry cannot fix")
	count(s.Watch.Gaps, "gaps in the watch")
	count(s.Watch.Repeated, "events the watch sent twice")
	if s.Watch.LastSeq != s.Stored {
		f = append(f, fmt.Sprintf("the watch ended at sequence %d of %d", s.Watch.LastSeq, s.Stored))
	}
	if s.Create.Acknowledged == 0 {
		f = append(f, "no create was acknowledged: the run tested nothing")
	}
	return f
}

// Print writes the summary as tables a person can read.
func (s *Summary) Print(out io.Writer) {
	fmt.Fprintf(out, "\nordersd fault run: %v, seed %d; 3 clustered nodes (stream ORDERS, R3), %d stateless replicas; %s balancing\n\n",
		s.Duration, s.Seed, s.Replicas, s.Balancing)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\tinjected\tlongest write outage\tlongest recovery\t")
	for _, k := range Kinds {
		if f := s.Faults[k]; f != nil {
			fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t\n", k.Describe(), f.Injected, f.LongestOutage.Round(time.Millisecond), f.LongestRecovery.Round(time.Millisecond))
		}
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tattempted\tacknowledged\tlost\tduplicated\tcalls retried\tunexpected errors\t")
	for _, op := range []struct {
		name string
		s    OpStats
	}{{"create", s.Create}, {"approve", s.Approve}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", op.name, op.s.Attempted, op.s.Acknowledged, op.s.Lost, op.s.Duplicated, op.s.RetriedCalls, op.s.Unexpected)
	}
	tw.Flush()
	fmt.Fprintln(out)
	processes := s.Processes
	for _, ph := range s.Traffic {
		if ph.Calls["none"] > 0 {
			processes = append(processes, "none")
			break
		}
	}
	printTraffic(out, s.Traffic, processes)
	fmt.Fprintf(out, "\nwork queue: %d deliveries (%d redelivered, allowed: at least once), %d created events missing, stream reopened %d times, %d stalls\n",
		s.Queue.Delivered, s.Queue.Redelivered, s.Queue.Missing, s.Queue.Reopened, s.Queue.Stalls)
	fmt.Fprintf(out, "confirmed acks: %d deliveries of an event whose ack was confirmed: %d raced (sent before the ack was confirmed), %d allowed across an election (sent after a consumer leader was elected, the window docs/guarantees.md gives), %d lost; %d consumer leader elections\n",
		s.Queue.AfterConfirmedAck, s.Queue.Raced, s.Queue.AcrossElection, s.Queue.LostAcks, s.Queue.Elections)
	fmt.Fprintf(out, "watch: %d events up to sequence %d of %d, %d gaps, %d repeated, resumed %d times, %d stalls, longest lag %v\n",
		s.Watch.Events, s.Watch.LastSeq, s.Stored, s.Watch.Gaps, s.Watch.Repeated, s.Watch.Reopened, s.Watch.Stalls, s.Watch.LongestLag.Round(time.Millisecond))
	fmt.Fprintf(out, "max unavailability window: %v without any acknowledged write; the longest a retrying client waited was %v\n",
		s.LongestNoAck.Round(time.Millisecond), s.LongestWait.Round(time.Millisecond))
	for _, p := range s.Problems {
		fmt.Fprintln(out, "  -", p)
	}
	if f := s.Failures(); len(f) > 0 {
		fmt.Fprintln(out, "\nFAIL:")
		for _, line := range f {
			fmt.Fprintln(out, "  -", line)
		}
		return
	}
	fmt.Fprintln(out, "\nPASS: nothing acknowledged was lost, no retried request was stored twice, no stream skipped or stalled")
}
