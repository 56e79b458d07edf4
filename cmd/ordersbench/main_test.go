package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	heapRows := 0
	for _, r := range results {
		if r.DirectRate <= 0 || r.OrdersdRate <= 0 {
			t.Errorf("%s: direct %v/s, ordersd %v/s", r.Workload, r.DirectRate, r.OrdersdRate)
		}
		if r.HeapBytesPerOrder != 0 {
			heapRows++
		}
	}
	if heapRows != 1 {
		t.Errorf("%d rows give the heap per stored order, want the heap row's one", heapRows)
	}
}
