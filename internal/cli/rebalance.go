package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ordersd/ordersd/internal/leaders"
	"github.com/ordersd/ordersd/internal/node"
)

// rebalanceCommand is the subcommand that spreads the leaders of
// ordersd's streams over the NATS cluster once, now, and shows where they
// are: `ordersd rebalance --nats-url ...`, with the NATS flags of the
// server (see docs/scaling.md).
const rebalanceCommand = "rebalance"

// runRebalance runs `ordersd rebalance` with args (the flags after it)
// and returns the exit status: 0 spread (or nothing to spread), 1 failed
// (the placement it reached is printed; run it again), 2 bad flags.
func runRebalance(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ordersd rebalance:", err)
		return 2
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ordersd rebalance:", err)
		return 2
	}
	rep, err := node.Rebalance(ctx, cfg.Config, log)
	if errors.Is(err, node.ErrInvalidConfig) {
		fmt.Fprintln(stderr, "ordersd rebalance:", err)
		return 2
	}
	printRebalanceReport(stdout, rep)
	if err != nil {
		fmt.Fprintln(stderr, "ordersd rebalance:", err)
		return 1
	}
	return 0
}

// printRebalanceReport shows the moves asked for and where every
// stream's leader and copies are now.
func printRebalanceReport(w io.Writer, rep leaders.Report) {
	for _, m := range rep.Moves {
		fmt.Fprintf(w, "moved: %s from %s to %s\n", m.Stream, m.From, m.To)
	}
	if len(rep.Moves) == 0 && len(rep.After) > 0 {
		fmt.Fprintln(w, "nothing to move: the leaders are spread as evenly as the current copies allow")
	}
	for _, s := range rep.After {
		leader := s.Leader
		if leader == "" {
			leader = "(electing)"
		}
		var followers []string
		for _, f := range s.Followers {
			state := "current"
			if !f.Current {
				state = "behind or offline"
			}
			followers = append(followers, f.Name+" ("+state+")")
		}
		copies := "replicas"
		if s.Replicas == 1 {
			copies = "replica"
		}
		fmt.Fprintf(w, "stream %s (%d %s): leader %s", s.Name, s.Replicas, copies, leader)
		if len(followers) > 0 {
			fmt.Fprintf(w, ", followers %s", strings.Join(followers, ", "))
		}
		fmt.Fprintln(w)
	}
}
