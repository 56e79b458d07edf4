// Command ordersfault runs ordersd through randomized faults and prints
// what it found: operations attempted and acknowledged, acknowledged
// writes lost (must be 0), retried requests stored twice (must be 0),
// events the work queue or a resuming watcher missed, and the longest
// unavailability window. It exits 1 when any promise was broken.
//
// It runs the ordersd binary as child processes: three clustered nodes
// (embedded NATS, stream R3) whose routes run through cuttable links, and
// stateless replicas behind cuttable links, and SIGKILLs them, the stream
// leader's node included, stops the leader's node with SIGTERM, cuts a
// replica's links, or cuts the leader's node from one or both peers.
//
//	go run ./cmd/ordersfault                        # 60s of faults; builds ordersd first
//	go run ./cmd/ordersfault -duration 10m -seed 7  # a longer run, another schedule
//	go run ./cmd/ordersfault -ordersd ./ordersd     # a binary built beforehand
//	go run ./cmd/ordersfault -faults kill-leader    # only some kinds of faults
//	go run ./cmd/ordersfault -balancing weighted    # writers balance on load reports
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ordersd/ordersd/internal/faultrun"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "ordersfault:", err)
		os.Exit(2)
	}
}

func run() error {
	var o faultrun.Options
	fs := flag.NewFlagSet("ordersfault", flag.ContinueOnError)
	fs.DurationVar(&o.Duration, "duration", time.Minute, "how long to inject faults")
	fs.Uint64Var(&o.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the fault schedule (the same seed repeats kinds, targets and pauses)")
	fs.IntVar(&o.Replicas, "replicas", 2, "stateless ordersd replicas beside the three clustered nodes")
	fs.IntVar(&o.Creators, "creators", 8, "clients creating orders")
	fs.IntVar(&o.Approvers, "approvers", 4, "clients approving created orders")
	kinds := fs.String("faults", joinKinds(faultrun.Kinds), "the `kinds` of faults to inject, comma-separated")
	balancing := fs.String("balancing", string(faultrun.Random), "how the writers pick a process: `random` (any, running or not, for each call) or weighted (gRPC's weighted_round_robin on the processes' load reports, with health checking)")
	binary := fs.String("ordersd", "", "the ordersd `binary` to run; built from ./cmd/ordersd when empty")
	dir := fs.String("dir", "", "`directory` for data and process logs; a new temporary one, removed after a passing run, when empty")
	jsonOut := fs.String("json", "", "also write the summary as JSON to this `file`")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var err error
	if o.Kinds, err = faultrun.ParseKinds(*kinds); err != nil {
		return err
	}
	if o.Balancing, err = faultrun.ParseBalancing(*balancing); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	keep := *dir != ""
	if !keep {
		d, err := os.MkdirTemp("", "ordersfault-")
		if err != nil {
			return err
		}
		*dir = d
	}
	if *binary == "" {
		*binary = filepath.Join(*dir, "ordersd")
		fmt.Println("building ordersd from ./cmd/ordersd")
		build := exec.Command("go", "build", "-o", *binary, "./cmd/ordersd")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build ordersd (run from the repository root, or pass -ordersd): %w", err)
		}
	}
	o.Dir, o.Progress = *dir, os.Stdout
	o.Command = func(args ...string) *exec.Cmd { return exec.Command(*binary, args...) }

	sum, err := faultrun.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, *dir)
	}
	sum.Print(os.Stdout)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if len(sum.Failures()) > 0 {
		fmt.Printf("data and logs kept in %s\n", *dir)
		os.Exit(1)
	}
	if !keep {
		return os.RemoveAll(*dir)
	}
	return nil
}

// joinKinds lists kinds by their short names, comma-separated.
func joinKinds(kinds []faultrun.FaultKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ",")
}
