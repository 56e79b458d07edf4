// Package faultrun runs ordersd through a randomized mix of faults and
// reports what clients were told against what the stream holds: every
// write a client saw acknowledged must be stored, no retried request may
// store twice, the work queue must deliver every created event, and a
// watcher resuming from its last sequence must see no gap.
//
// The deployment is real and runs as child processes of the ordersd
// binary: three nodes whose embedded NATS servers form one JetStream
// cluster (the stream ORDERS on all three) over routes that run through
// TCP proxies, and stateless replicas that reach those servers through
// TCP proxies too. The faults are SIGKILL of the stream leader's node, of
// a follower node, of a replica, a graceful stop (SIGTERM) of the stream
// leader's node, a cut of a replica's network path to NATS, and cuts of
// the routes between the stream leader's node and one follower or both
// (the cluster split in two); each is repaired after a while. cmd/ordersfault runs it
// from the command line, and a test in internal/systemtest runs short
// pinned schedules of it in CI.
package faultrun

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// Options configure a run.
type Options struct {
	Duration  time.Duration // how long faults are injected (longer if that is what it takes to inject each kind once)
	Seed      uint64        // the random schedule; the same seed gives the same kinds, targets and pauses
	Kinds     []FaultKind   // the faults to inject; all of Kinds when empty
	Replicas  int           // stateless ordersd replicas beside the three clustered nodes
	Creators  int           // clients creating orders
	Approvers int           // clients approving created orders
	Pace      time.Duration // pause between one client's operations
	CallTime  time.Duration // deadline of one call
	OpTimeout time.Duration // ordersd's --nats-timeout
	Balancing Balancing     // how writers pick a process; Random when empty
	Dir       string        // data directories and process logs
	// Command returns the command that runs ordersd with args.
	Command func(args ...string) *exec.Cmd
	// Progress receives a line per fault; nil discards them.
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.Command == nil || o.Dir == "" {
		return errors.New("faultrun: Command and Dir are required")
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if len(o.Kinds) == 0 {
		o.Kinds = Kinds
	}
	o.Replicas = cmp.Or(o.Replicas, 2)
	o.Creators = cmp.Or(o.Creators, 8)
	o.Approvers = cmp.Or(o.Approvers, 4)
	o.Pace = cmp.Or(o.Pace, 20*time.Millisecond)
	o.CallTime = cmp.Or(o.CallTime, 5*time.Second)
	o.OpTimeout = cmp.Or(o.OpTimeout, 2*time.Second)
	o.Balancing = cmp.Or(o.Balancing, Random)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// drainTime bounds how long, after the faults stop, operations in flight
// may keep retrying and the readers may take to catch up.
const drainTime = time.Minute

// leaderPollInterval is how often the run asks for the work-queue
// consumer's leader, besides listening to its election advisories.
const leaderPollInterval = 250 * time.Millisecond

// Run starts the deployment, runs the workload under faults for
// o.Duration, repairs everything, lets the clients finish, and checks the
// stream. The error is for a run that could not be carried out; what the
// run found is in the summary (see Summary.Failures).
func Run(ctx context.Context, o Options) (*Summary, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	started := time.Now()
	c, err := startCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	fmt.Fprintf(o.Progress, "cluster up in %v: 3 clustered nodes, %d stateless replicas; logs in %s\n",
		time.Since(started).Round(time.Millisecond), o.Replicas, o.Dir)

	sends, leaders := NewSendLog(eventstore.StreamName, queueConsumer), newLeaderLog(eventstore.StreamName, queueConsumer)
	if err := c.observe(sends, leaders); err != nil {
		return nil, err
	}
	l := newLedger()
	var finishBy atomic.Int64 // unix nanoseconds; 0 while the run goes on
	deadline := func() time.Time {
		if t := finishBy.Load(); t != 0 {
			return time.Unix(0, t)
		}
		return time.Now().Add(time.Hour)
	}
	tr := &traffic{}
	w := &writers{c: c, l: l, traffic: tr, callTime: o.CallTime, pace: o.Pace}
	q := &queueReader{c: c, seen: map[string]int{}, confirmed: map[string]confirmedAck{}}
	wat := &watcher{c: c}

	writeCtx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	readCtx, stopReads := context.WithCancel(ctx)
	defer stopReads()
	var writing, reading sync.WaitGroup
	for i := range o.Creators {
		writing.Go(func() { w.create(writeCtx, i, deadline) })
	}
	for range o.Approvers {
		writing.Go(func() { w.approve(writeCtx, deadline) })
	}
	reading.Go(func() { q.run(readCtx) })
	reading.Go(func() { wat.run(readCtx) })
	reading.Go(func() { leaders.poll(readCtx, c.js, leaderPollInterval) })

	sum := &Summary{Duration: o.Duration, Seed: o.Seed, Replicas: o.Replicas, Balancing: o.Balancing, Faults: map[FaultKind]*FaultStats{}}
	for _, p := range c.all() {
		sum.Processes = append(sum.Processes, p.name)
	}
	for _, k := range o.Kinds {
		sum.Faults[k] = &FaultStats{}
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	faults, faultErr := c.injectFaults(ctx, time.Now().Add(o.Duration), rng, o.Kinds, sum.Faults, func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "%6.1fs  "+format+"\n", append([]any{time.Since(started).Seconds()}, args...)...)
	})

	// Faults over, everything repaired: operations in flight finish, then
	// the readers catch up with the stream.
	finishBy.Store(time.Now().Add(drainTime).UnixNano())
	stopWrites()
	writing.Wait()
	caughtUp := waitCaughtUp(ctx, c.js, wat, drainTime)
	stopReads()
	reading.Wait()
	if faultErr != nil {
		return nil, faultErr
	}

	s, err := readStored(ctx, c.js)
	if err != nil {
		return nil, err
	}
	// Every delivery the reader got was seen going out before it came
	// (if at all): the sends are all logged by now.
	q.classifyAfterAck(sends, leaders)
	sum.fill(l, q, wat)
	sum.Traffic = tr.byPhase(faults)
	sum.attributeOutages(faults, l.outages)
	if caughtUp != nil {
		sum.note("readers did not catch up within %v: %v", drainTime, caughtUp)
	}
	s.check(sum, l, q, wat)
	sum.Stored = s.lastSeq
	return sum, nil
}

// waitCaughtUp waits until the work-queue consumer has nothing pending or
// unacknowledged and the watcher has reached the stream's last sequence.
func waitCaughtUp(ctx context.Context, js jetstream.JetStream, w *watcher, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := func() error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			stream, err := js.Stream(ctx, eventstore.StreamName)
			if err != nil {
				return err
			}
			cons, err := stream.Consumer(ctx, queueConsumer)
			if err != nil {
				return err
			}
			info := cons.CachedInfo()
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return fmt.Errorf("work queue: %d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
			}
			if last := stream.CachedInfo().State.LastSeq; w.last() != last {
				return fmt.Errorf("watcher at sequence %d of %d", w.last(), last)
			}
			return nil
		}()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
