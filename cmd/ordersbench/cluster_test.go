package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// The CPU time of a process is read from /proc/<pid>/stat: utime and
// stime after the command name, which may hold spaces and parentheses.
func TestParseProcCPU(t *testing.T) {
	// Fields 3 to 15 after the name: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime.
	got, err := parseProcCPU("4242 (orders d) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0")
	if err != nil {
		t.Fatal(err)
	}
	if want := 300 * time.Second / clockTicks; got != want {
		t.Errorf("CPU time %v, want %v (250+50 ticks)", got, want)
	}
	for _, bad := range []string{"4242 no name", "4242 (ordersd) S 1 2", "4242 (ordersd) S 1 4242 4242 0 -1 4194560 900 0 0 0 x 50"} {
		if _, err := parseProcCPU(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if _, err := parseProcCPU(string(self)); err != nil {
		t.Errorf("this process's own stat: %v", err)
	}
}

// The leader of each stream is read from the series of
// ordersd_stream_leader at 1, whatever the order of their labels.
func TestParseLeaders(t *testing.T) {
	got := parseLeaders(`# HELP ordersd_stream_leader 1 for the server that leads each of ordersd's streams
# TYPE ordersd_stream_leader gauge
ordersd_stream_leader{server="node1",stream="ORDERS_0"} 1
ordersd_stream_leader{stream="ORDERS_1",server="node2"} 1
ordersd_stream_leader{server="node3",stream="ORDERS_2"} 0
ordersd_stream_leader_other{server="node3",stream="ORDERS_2"} 1
ordersd_grpc_requests_total{method="CreateOrder"} 1
`)
	want := map[string]string{"ORDERS_0": "node1", "ORDERS_1": "node2"}
	if len(got) != len(want) || got["ORDERS_0"] != "node1" || got["ORDERS_1"] != "node2" {
		t.Errorf("leaders %v, want %v", got, want)
	}
}

// The partitions count as spread once they are on min(N, servers)
// servers.
func TestCheckSpread(t *testing.T) {
	three := eventstore.Layout{Partitions: 3}
	if err := checkSpread(map[string]string{"ORDERS_0": "n1", "ORDERS_1": "n2", "ORDERS_2": "n3"}, three, 3); err != nil {
		t.Errorf("one per server: %v", err)
	}
	if err := checkSpread(map[string]string{"ORDERS_0": "n1", "ORDERS_1": "n2", "ORDERS_2": "n2"}, three, 3); err == nil {
		t.Error("two on one server taken for spread")
	}
	if err := checkSpread(map[string]string{"ORDERS": "n2"}, eventstore.Layout{}, 3); err != nil {
		t.Errorf("layout 2, one stream: %v", err)
	}
}

// A cluster row gives each process's CPU per 1,000 creates of the whole
// cluster and the streams it leads.
func TestClusterRow(t *testing.T) {
	h := &histogram{}
	h.record(2 * time.Millisecond)
	s := side{ops: 4000, elapsed: 2 * time.Second, lat: h}
	procs := []*clusterProcess{{name: "node1"}, {name: "node2"}}
	leaders := map[string]string{"ORDERS_1": "node2", "ORDERS_0": "node2", "ORDERS_DEAD_LETTERS": "node1"}
	r := clusterRow(options{clusterC: 64}, eventstore.Layout{Partitions: 2}, s,
		[]time.Duration{time.Second, 0}, []time.Duration{3 * time.Second, 500 * time.Millisecond}, leaders, procs)
	if r.Workload != "cluster create, unary, c=64 [2 partitions]" || r.OrdersdRate != 2000 || r.Partitions != 2 || r.OrdersdP50Ms != 2.01 {
		t.Errorf("row %+v", r)
	}
	if len(r.Nodes) != 2 {
		t.Fatalf("nodes %+v", r.Nodes)
	}
	if n := r.Nodes[0]; n.CPUSeconds != 2 || n.CPUSecondsPer1000 != 0.5 || !slices.Equal(n.Leads, []string{"ORDERS_DEAD_LETTERS"}) {
		t.Errorf("node1 %+v, want 2 cpu s, 0.5 per 1,000 creates, leading the dead letters", n)
	}
	if n := r.Nodes[1]; n.CPUSecondsPer1000 != 0.125 || !slices.Equal(n.Leads, []string{"ORDERS_0", "ORDERS_1"}) {
		t.Errorf("node2 %+v, want 0.125 per 1,000 creates, leading both partitions", n)
	}
}

// -partitions takes a list of layouts; the workloads whose direct side
// reads layout 2's streams refuse a partitioned one, naming themselves.
func TestPartitionsOption(t *testing.T) {
	o, err := parseOptions([]string{"-workloads", "create,stream,transition,heap,cluster", "-partitions", "0,1,3"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.partitions, []int{0, 1, 3}) {
		t.Errorf("partitions %v", o.partitions)
	}
	if _, err := parseOptions([]string{"-partitions", "3"}); err == nil || !strings.Contains(err.Error(), "consume workload") {
		t.Errorf("the default workloads with -partitions 3: %v, want a refusal naming consume", err)
	}
	for _, bad := range []string{"-1", "65", "x", ""} {
		if _, err := parseOptions([]string{"-workloads", "create", "-partitions", bad}); err == nil {
			t.Errorf("-partitions %q: no error", bad)
		}
	}
}

// The cluster workload runs end to end on three partitions: three ordersd
// processes, the partitions' leaders one per process (read from their
// metrics), and every process's CPU measured (a short run: it checks that
// the workload works and reports, not how fast it is).
func TestShortClusterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ordersd and starts three processes")
	}
	dir := t.TempDir()
	binary := filepath.Join(dir, "ordersd")
	build := exec.Command("go", "build", "-o", binary, "github.com/ordersd/ordersd/cmd/ordersd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ordersd: %v\n%s", err, out)
	}
	o, err := parseOptions([]string{"-workloads", "cluster", "-partitions", "3", "-cluster-duration", "300ms", "-cluster-concurrency", "6",
		"-ordersd", binary, "-json", filepath.Join(dir, "bench.json")})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := runCluster(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || len(rows[0].Nodes) != clusterSize || rows[0].OrdersdP50Ms <= 0 {
		t.Fatalf("rows %+v, want one with a latency and %d processes", rows, clusterSize)
	}
	var partitions []string
	for _, n := range rows[0].Nodes {
		if n.CPUSeconds <= 0 || n.CPUSecondsPer1000 <= 0 {
			t.Errorf("%s: no CPU measured: %+v", n.Name, n)
		}
		led := 0
		for _, s := range n.Leads {
			if _, ok := (eventstore.Layout{Partitions: 3}).PartitionOfStream(s); ok {
				partitions = append(partitions, s)
				led++
			}
		}
		if led != 1 {
			t.Errorf("%s leads %v, want one partition", n.Name, n.Leads)
		}
	}
	slices.Sort(partitions)
	if !slices.Equal(partitions, []string{"ORDERS_0", "ORDERS_1", "ORDERS_2"}) {
		t.Errorf("partitions led %v, want each of the three once", partitions)
	}
}
