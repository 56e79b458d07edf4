package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/faultrun"
)

var (
	faultDuration = flag.Duration("fault-duration", 30*time.Second, "how long TestFaultRun injects faults")
	faultSeed     = flag.Uint64("fault-seed", 0, "seed of TestFaultRun's schedule; 0: a new one")
)

// The fault run against ordersd processes (this test binary as ordersd):
// three clustered nodes and two stateless replicas, SIGKILLed (the stream
// leader's node included) and cut from NATS at random while clients
// create, approve, consume and watch. Nothing acknowledged may be lost,
// no retried request stored twice, no event missed by the work queue or a
// resuming watcher, and no stream may stall. cmd/ordersfault runs the same
// from the command line; longer here with -fault-duration.
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five ordersd processes under faults")
	}
	seed := *faultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	var progress strings.Builder
	sum, err := faultrun.Run(context.Background(), faultrun.Options{
		Duration: *faultDuration,
		Seed:     seed,
		Dir:      t.TempDir(),
		Progress: &progress,
		Command: func(args ...string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "ORDERSD_TEST_RUN_MAIN=1")
			return cmd
		},
	})
	if err != nil {
		t.Fatalf("the fault run could not be carried out: %v\n%s", err, progress.String())
	}
	sum.Print(&progress)
	t.Log("\n" + progress.String())
	for _, f := range sum.Failures() {
		t.Errorf("seed %d: %s", seed, f)
	}
	for _, k := range faultrun.Kinds {
		if sum.Faults[k].Injected == 0 {
			t.Errorf("no %q fault was injected in %v", k, *faultDuration)
		}
	}
	if sum.Create.RetriedCalls == 0 {
		t.Error("no create failed: the faults hit nothing")
	}
}
