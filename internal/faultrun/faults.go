package faultrun

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind is one kind of fault the run injects, by its short name.
type FaultKind string

const (
	// KillLeader sends SIGKILL to the clustered node whose NATS server leads
	// the stream ORDERS, and restarts it on its data after a while.
	KillLeader FaultKind = "kill-leader"
	// StopLeader sends SIGTERM to the stream leader's node, as a rolling
	// restart does, and restarts it after a while.
	StopLeader FaultKind = "stop-leader"
	// KillFollower does the same as KillLeader to a node that does not lead
	// the stream.
	KillFollower FaultKind = "kill-follower"
	// KillReplica sends SIGKILL to a stateless replica and restarts it.
	KillReplica FaultKind = "kill-replica"
	// CutLink cuts a stateless replica's TCP paths to NATS, then restores them.
	CutLink FaultKind = "cut-link"
	// CutRoute cuts the cluster route between the stream leader's node and
	// a follower node, both ways, for longer than an election, then
	// restores it. Both still reach the third node, but NATS does not
	// forward between routes: the two see nothing of each other.
	CutRoute FaultKind = "cut-route"
	// IsolateLeader cuts the routes between the stream leader's node and
	// both other nodes for longer than an election, then restores them:
	// the cluster split in two, the old leader alone on its side, still
	// running and still reached by the clients connected to it.
	IsolateLeader FaultKind = "isolate-leader"
)

// Kinds are the fault kinds, in the order the run first injects each.
var Kinds = []FaultKind{KillLeader, CutLink, KillReplica, StopLeader, KillFollower, CutRoute, IsolateLeader}

// Describe says what a fault of kind k does, for people.
func (k FaultKind) Describe() string {
	switch k {
	case KillLeader:
		return "kill the stream leader's node"
	case StopLeader:
		return "stop the stream leader's node"
	case KillFollower:
		return "kill a follower node"
	case KillReplica:
		return "kill a stateless replica"
	case CutLink:
		return "cut a replica's NATS link"
	case CutRoute:
		return "cut the leader's route to a follower"
	case IsolateLeader:
		return "cut the leader's node off the cluster"
	}
	return string(k)
}

// hold is how long a fault of kind k lasts before its repair. A route cut
// lasts longer than an election, so that the nodes that lost the leader
// elect another while it still runs, and up to a few seconds more: past
// the 10 s after which a leader that reaches no quorum steps down, or not.
func (k FaultKind) hold(rng *rand.Rand) time.Duration {
	if k == CutRoute || k == IsolateLeader {
		return jitter(rng, maxElection+time.Second, maxElection+5*time.Second)
	}
	return jitter(rng, time.Second, 4*time.Second)
}

// ParseKinds reads a comma-separated list of fault kinds' short names.
func ParseKinds(list string) ([]FaultKind, error) {
	var kinds []FaultKind
	for _, name := range strings.Split(list, ",") {
		k := FaultKind(strings.TrimSpace(name))
		if !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("unknown fault kind %q (known: %v)", name, Kinds)
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// FaultStats count one kind of fault.
type FaultStats struct {
	Injected        int           `json:"injected"`
	LongestRecovery time.Duration `json:"longest_recovery"` // from the repair to every process SERVING again
	// LongestOutage is the longest time without any acknowledged write
	// that overlapped one of these faults.
	LongestOutage time.Duration `json:"longest_outage"`
}

// fault is one injected fault: what was hit, how to repair it, and when
// it began and ended.
type fault struct {
	kind   FaultKind
	target string
	repair func() error

	at, repaired, recovered time.Time
}

// inject hits the cluster with one fault of kind k.
func (c *cluster) inject(ctx context.Context, k FaultKind, rng *rand.Rand) (fault, error) {
	switch k {
	case KillLeader, StopLeader, KillFollower:
		leader, err := c.streamLeader(ctx)
		if err != nil {
			return fault{}, fmt.Errorf("find the stream leader: %w", err)
		}
		target := leader
		if k == KillFollower {
			var followers []*process
			for _, p := range c.nodes {
				if p != leader {
					followers = append(followers, p)
				}
			}
			target = followers[rng.IntN(len(followers))]
		}
		if k == StopLeader {
			target.stop()
		} else {
			target.kill()
		}
		return fault{kind: k, target: target.name, repair: func() error { return c.start(target) }}, nil
	case KillReplica:
		target := c.replicas[rng.IntN(len(c.replicas))]
		target.kill()
		return fault{kind: k, target: target.name, repair: func() error { return c.start(target) }}, nil
	case CutLink:
		target := c.replicas[rng.IntN(len(c.replicas))]
		for _, l := range target.links {
			l.Cut()
		}
		return fault{kind: k, target: target.name, repair: func() error {
			for _, l := range target.links {
				l.Restore()
			}
			return nil
		}}, nil
	case CutRoute, IsolateLeader:
		leader, err := c.streamLeader(ctx)
		if err != nil {
			return fault{}, fmt.Errorf("find the stream leader: %w", err)
		}
		l := slices.Index(c.nodes, leader)
		var peers []int
		for i := range c.nodes {
			if i != l {
				peers = append(peers, i)
			}
		}
		target := leader.name
		if k == CutRoute {
			peers = []int{peers[rng.IntN(len(peers))]}
			target += " and " + c.nodes[peers[0]].name
		}
		for _, p := range peers {
			c.routes.cut(l, p)
		}
		return fault{kind: k, target: target, repair: func() error {
			for _, p := range peers {
				c.routes.restore(l, p)
			}
			return nil
		}}, nil
	}
	return fault{}, fmt.Errorf("unknown fault kind %q", k)
}

// injectFaults runs the fault schedule until ctx ends: a healthy pause,
// a fault held for a while, its repair, and a wait until every process
// serves again. Each of kinds comes once first, in order, even when that
// takes longer than until; then kinds are random until then. It stops
// early (after repairing) when ctx ends. It logs each fault through logf
// and returns them all.
func (c *cluster) injectFaults(ctx context.Context, until time.Time, rng *rand.Rand, kinds []FaultKind, stats map[FaultKind]*FaultStats, logf func(string, ...any)) ([]fault, error) {
	var faults []fault
	for i := 0; ; i++ {
		pause := jitter(rng, time.Second, 3*time.Second)
		if i >= len(kinds) && time.Now().Add(pause).After(until) {
			sleep(ctx, time.Until(until))
			return faults, nil
		}
		if !sleep(ctx, pause) {
			return faults, nil
		}
		at := time.Now()
		kind := kinds[rng.IntN(len(kinds))]
		if i < len(kinds) {
			kind = kinds[i]
		}
		f, err := c.inject(ctx, kind, rng)
		if err != nil {
			return faults, err
		}
		f.at = at
		hold := kind.hold(rng)
		logf("fault %d: %s (%s) for %v", i+1, f.kind.Describe(), f.target, hold.Round(time.Millisecond))
		stats[kind].Injected++
		// The repair happens even when the run is stopped during the hold.
		sleep(ctx, hold)
		repaired := time.Now()
		if err := f.repair(); err != nil {
			return faults, fmt.Errorf("repair %s (%s): %w", f.kind.Describe(), f.target, err)
		}
		if err := c.waitServing(context.Background(), time.Minute); err != nil {
			return faults, fmt.Errorf("after %s (%s): %w", f.kind.Describe(), f.target, err)
		}
		f.repaired, f.recovered = repaired, time.Now()
		faults = append(faults, f)
		recovered := f.recovered.Sub(repaired)
		stats[kind].LongestRecovery = max(stats[kind].LongestRecovery, recovered)
		logf("fault %d repaired; every process SERVING %v later", i+1, recovered.Round(time.Millisecond))
	}
}

func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// sleep waits d, or less when ctx ends first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
