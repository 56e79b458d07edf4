package systemtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/faultrun"
)

var (
	faultDuration = flag.Duration("fault-duration", 30*time.Second, "how long TestFaultRun injects faults with -fault-seed or -fault-random")
	faultSeed     = flag.Uint64("fault-seed", 0, "run TestFaultRun with this seed (every kind of fault, for -fault-duration) instead of the pinned schedules")
	faultRandom   = flag.Bool("fault-random", false, "run TestFaultRun with a new random seed (every kind of fault, for -fault-duration) instead of the pinned schedules")
)

// pinnedFaultRuns are the schedules TestFaultRun runs by default: fixed
// seeds, so that a failure repeats with the same kinds, targets and pauses,
// and a pass means the same on every machine. Each run injects its kinds
// (each once, as the run's first faults; pinnedFaultDuration is shorter
// than that takes) and together they inject every kind: the last run
// kills a follower, then splits the cluster (the leader's node cut off)
// and cuts the leader's route to one follower. Three short runs cost
// about what one 30 s run of every kind did.
var pinnedFaultRuns = []struct {
	seed  uint64
	kinds []faultrun.FaultKind
}{
	{2026, []faultrun.FaultKind{faultrun.KillLeader, faultrun.CutLink}},
	{7, []faultrun.FaultKind{faultrun.StopLeader, faultrun.KillReplica}},
	{42, []faultrun.FaultKind{faultrun.KillFollower, faultrun.IsolateLeader, faultrun.CutRoute}},
}

// pinnedFaultDuration is each pinned run's fault time: shorter than two
// faults take, so each run injects its kinds once and stops.
const pinnedFaultDuration = 5 * time.Second

// The fault run against ordersd processes (this test binary as ordersd):
// three clustered nodes and two stateless replicas, SIGKILLed (the stream
// leader's node included), stopped, cut from NATS, and the nodes' routes
// cut (the leader's node from one peer, and from both) while clients
// create, approve, consume and watch. Nothing acknowledged may be lost, no retried
// request stored twice, no event missed by the work queue or a resuming
// watcher, and no stream may stall. By default it runs the pinned
// schedules; -fault-seed repeats one schedule of every kind, -fault-random
// tries a new one (with -fault-duration). cmd/ordersfault runs the same
// from the command line.
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five ordersd processes under faults")
	}
	switch {
	case *faultRandom:
		_, _ = runFaults(t, uint64(time.Now().UnixNano()), *faultDuration, faultrun.Kinds)
		return
	case *faultSeed != 0:
		_, _ = runFaults(t, *faultSeed, *faultDuration, faultrun.Kinds)
		return
	}
	injected := map[faultrun.FaultKind]int{}
	for _, run := range pinnedFaultRuns {
		t.Run(fmt.Sprintf("seed %d", run.seed), func(t *testing.T) {
			got, _ := runFaults(t, run.seed, pinnedFaultDuration, run.kinds)
			for k, n := range got {
				injected[k] += n
			}
		})
	}
	for _, k := range faultrun.Kinds {
		if injected[k] == 0 {
			t.Errorf("no pinned run injected a %q fault", k)
		}
	}
}

// runFaults carries out one fault run and fails t with what it found. It
// returns how many faults of each kind it injected, and the summary.
func runFaults(t *testing.T, seed uint64, d time.Duration, kinds []faultrun.FaultKind, tune ...func(*faultrun.Options)) (map[faultrun.FaultKind]int, *faultrun.Summary) {
	t.Helper()
	t.Logf("seed %d (go test ./internal/systemtest -run TestFaultRun -fault-seed %d repeats it with every kind of fault)", seed, seed)
	var progress strings.Builder
	o := faultrun.Options{
		Duration: d,
		Seed:     seed,
		Kinds:    kinds,
		Dir:      t.TempDir(),
		Progress: &progress,
		Command: func(args ...string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "ORDERSD_TEST_RUN_MAIN=1")
			return cmd
		},
	}
	for _, f := range tune {
		f(&o)
	}
	sum, err := faultrun.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("seed %d: the fault run could not be carried out: %v\n%s", seed, err, progress.String())
	}
	sum.Print(&progress)
	t.Log("\n" + progress.String())
	for _, f := range sum.Failures() {
		t.Errorf("seed %d: %s", seed, f)
	}
	injected := map[faultrun.FaultKind]int{}
	for _, k := range kinds {
		if injected[k] = sum.Faults[k].Injected; injected[k] == 0 {
			t.Errorf("seed %d: no %q fault was injected", seed, k)
		}
	}
	// Every pinned run kills a process clients call; blind picks then hit
	// it (a weighted client steers clear, see TestFaultRunWeighted).
	if o.Balancing != faultrun.Weighted && sum.Create.RetriedCalls == 0 {
		t.Errorf("seed %d: no create failed: the faults hit nothing", seed)
	}
	return injected, sum
}

// The fault run with its writers behind gRPC's weighted_round_robin on the
// processes' load reports, with client-side health checking: while a
// stateless replica is killed or cut from NATS, the balancer sends it (next
// to) nothing, where a blind pick would send it one call in five; nothing
// acknowledged is lost either way. Counted per process from the run's
// traffic report.
func TestFaultRunWeighted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five ordersd processes under faults")
	}
	_, sum := runFaults(t, 11, pinnedFaultDuration, []faultrun.FaultKind{faultrun.KillReplica, faultrun.CutLink},
		func(o *faultrun.Options) { o.Balancing = faultrun.Weighted })
	held := 0
	for _, ph := range sum.Traffic {
		if ph.Target == "" || !strings.HasSuffix(ph.Phase, " held") {
			continue
		}
		held++
		total, toTarget := ph.Total(), ph.Calls[ph.Target]
		if total < 20 {
			t.Errorf("%s: only %d write calls", ph.Phase, total)
		}
		// A blind pick sends a fifth; the calls in flight when the fault
		// struck may still be counted against the target.
		if toTarget*20 > total {
			t.Errorf("%s: %d of %d write calls went to %s, more than one in 20", ph.Phase, toTarget, total, ph.Target)
		}
	}
	if held != 2 {
		t.Errorf("%d held faults in the traffic report, want 2", held)
	}
}
