package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The benchmark command runs end to end (a short run with small counts: it
// checks that every workload works and reports, not how fast it is).
func TestShortBenchmarkRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs every workload")
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	o, err := parseOptions([]string{
		"-duration", "200ms", "-concurrency", "1,4", "-transition-concurrency", "4",
		"-consume-events", "2000", "-watchers", "50", "-watchers-all", "5",
		"-watch-rate", "500", "-watch-duration", "500ms", "-watch-step", "200ms", "-watch-overload", "600ms", "-review-duration", "300ms", "-list-events", "2000", "-heap-orders", "2000", "-json", out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var results []result
	if err := json.Unmarshal(data, &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != 18 {
		t.Fatalf("%d rows, want 18: %+v", len(results), results)
	}
	// Every row measured what it names, however slow the machine: a rate
	// (which may round to 0 on a loaded machine) and a latency of calls
	// through ordersd, except a capacity row with no step within its
	// bound, which says which steps it ran.
	heapRows := 0
	for _, r := range results {
		switch {
		case r.DirectRate < 0 || r.OrdersdRate < 0:
			t.Errorf("%s: direct %v/s, ordersd %v/s", r.Workload, r.DirectRate, r.OrdersdRate)
		case strings.HasPrefix(r.Workload, "watch capacity") && r.OrdersdP50Ms == 0:
			if !strings.Contains(r.Note, "steps: ") || !strings.Contains(r.Note, " events/s: p99 ") {
				t.Errorf("%s: no step within the bound, and the note names none: %q", r.Workload, r.Note)
			}
		case r.OrdersdP50Ms <= 0:
			t.Errorf("%s: no latency through ordersd measured (%+v)", r.Workload, r)
		}
		if r.HeapBytesPerOrder != 0 {
			heapRows++
		}
	}
	if heapRows != 1 {
		t.Errorf("%d rows give the heap per stored order, want the heap row's one", heapRows)
	}
}

// The workloads that run on layout 3 do so with -partitions: both sides
// write the partitions' streams (a direct write on layout 2's subjects
// would find no stream), and every row names its layout.
func TestShortPartitionedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs the partitioned workloads")
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	o, err := parseOptions([]string{
		"-workloads", "create,stream,transition,heap", "-partitions", "3",
		"-duration", "200ms", "-concurrency", "1,4", "-transition-concurrency", "4", "-heap-orders", "2000", "-json", out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var results []result
	if err := json.Unmarshal(data, &results); err != nil {
		t.Fatal(err)
	}
	// create c=1 and c=4, streamed vs PublishAsync (the comparison with sync c=64 needs c=64), transition, heap.
	if len(results) != 5 {
		t.Fatalf("%d rows, want 5: %+v", len(results), results)
	}
	for _, r := range results {
		if !strings.HasSuffix(r.Workload, " [3 partitions]") || r.Partitions != 3 || r.OrdersdP50Ms <= 0 {
			t.Errorf("row %+v: want it named and marked as of 3 partitions, with a latency through ordersd", r)
		}
	}
}
