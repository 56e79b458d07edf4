package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/migrate"
	"github.com/ordersd/ordersd/internal/node"
)

// migrateCommand is the subcommand that rewrites the stream ORDERS into
// the current subject layout: `ordersd migrate [flags]`, with the NATS
// flags of the server (see docs/subject-layout.md).
const migrateCommand = "migrate"

// runMigrate runs `ordersd migrate` with args (the flags after it) and
// returns the exit status: 0 done (or nothing to do), 1 failed (run it
// again: it goes on from where it stopped), 2 bad flags.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ordersd migrate:", err)
		return 2
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ordersd migrate:", err)
		return 2
	}
	sum, err := node.Migrate(ctx, cfg.Config, log)
	if err != nil {
		fmt.Fprintln(stderr, "ordersd migrate:", err)
		return 1
	}
	printMigrateSummary(stdout, sum)
	return 0
}

// printMigrateSummary tells the operator what the migration did and what
// is left to them.
func printMigrateSummary(w io.Writer, sum migrate.Summary) {
	if sum.NothingToDo != "" {
		fmt.Fprintf(w, "ordersd migrate: %s\n", sum.NothingToDo)
		return
	}
	if sum.Partitions > 0 {
		printPartitionSummary(w, sum)
		return
	}
	fmt.Fprintf(w, "ordersd migrate: stream %s rewritten into subject layout %s in %s\n", eventstore.StreamName, eventstore.UnpartitionedLayout, sum.Took.Round(1e6))
	fmt.Fprintf(w, "  events:    %d, last sequence %d -> %d (revisions are the new stream sequences)\n", sum.Events, sum.OldLastSeq, sum.NewLastSeq)
	fmt.Fprintf(w, "  orders:    %d, each with its entry in the order-id index %s\n", sum.Orders, eventstore.IndexStreamName)
	if sum.Skipped > 0 {
		fmt.Fprintf(w, "  skipped:   %d messages that are not order events (kept in %s only)\n", sum.Skipped, sum.Backup)
	}
	fmt.Fprintf(w, "  consumers: %d durable consumers created again, each after its old ack floor\n", len(sum.Consumers))
	for _, c := range sum.Consumers {
		fmt.Fprintf(w, "    %s (%s): ack floor %d -> starts at %d\n", c.Name, strings.Join(c.Filters, " "), c.OldAckFloor, c.StartSequence)
	}
	fmt.Fprintf(w, "  clients:   revisions, watch start_sequence values, page tokens and ack tokens from before point at other events now:\n")
	fmt.Fprintf(w, "    clients read again; start the nodes with a new --ack-token-key-file (docs/subject-layout.md, \"Upgrading the stream layout\")\n")
	fmt.Fprintf(w, "  backup:    %s keeps the old events; once the migrated stream is checked, delete it:\n", sum.Backup)
	fmt.Fprintf(w, "    nats stream rm %s\n", sum.Backup)
}

// printPartitionSummary tells the operator what a migration to
// partitions did and what is left to them.
func printPartitionSummary(w io.Writer, sum migrate.Summary) {
	layout := eventstore.Layout{Partitions: sum.Partitions}
	fmt.Fprintf(w, "ordersd migrate: the orders of stream %s laid out in %d partitions (layout %s) in %s\n",
		eventstore.StreamName, sum.Partitions, eventstore.PartitionedLayout, sum.Took.Round(1e6))
	fmt.Fprintf(w, "  events:    %d (last sequence %d); each order's events in its partition, revisions are the partition's sequences\n", sum.Events, sum.OldLastSeq)
	for _, p := range layout.All() {
		fmt.Fprintf(w, "    %s: last sequence %d\n", p.Stream(), sum.PartitionLastSeqs[p.Number])
	}
	fmt.Fprintf(w, "  orders:    %d, each with its id claimed in its partition; %d ids claimed with no event carried over\n", sum.Orders, sum.Reserved)
	if sum.Skipped > 0 {
		fmt.Fprintf(w, "  skipped:   %d messages that are not order events (kept in %s only)\n", sum.Skipped, sum.Backup)
	}
	fmt.Fprintf(w, "  consumers: %d durable consumers created on every partition, each after its old ack floor\n", len(sum.Consumers))
	for _, c := range sum.Consumers {
		fmt.Fprintf(w, "    %s (%s): ack floor %d -> starts at %v\n", c.Name, strings.Join(c.Filters, " "), c.OldAckFloor, c.PartitionStarts)
	}
	fmt.Fprintf(w, "  nodes:     start every node with --partitions %d; revisions, page tokens and ack tokens from before are refused or point at other events\n", sum.Partitions)
	fmt.Fprintf(w, "  backup:    %s and %s keep the old layout; once the partitions are checked, delete them:\n", eventstore.StreamName, eventstore.IndexStreamName)
	fmt.Fprintf(w, "    nats stream rm %s; nats stream rm %s\n", eventstore.StreamName, eventstore.IndexStreamName)
}
