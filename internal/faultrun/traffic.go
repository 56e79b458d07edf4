package faultrun

import (
	"fmt"
	"io"
	"net"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/weightedroundrobin" // Weighted's policy
	_ "google.golang.org/grpc/health"                      // client-side health checking for Weighted
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Balancing is how the run's writers pick the process for a call.
type Balancing string

const (
	// Random picks any process, running or not, for each call, as a
	// client behind a blind load balancer might reach any of them.
	Random Balancing = "random"
	// Weighted sends every call through one client connection to all
	// processes, balanced by gRPC's weighted_round_robin on the load
	// reports (ORCA) of each process, with client-side health checking:
	// a process that is down or NOT_SERVING gets no calls, a busy one
	// fewer.
	Weighted Balancing = "weighted"
)

// ParseBalancing reads a Balancing's name.
func ParseBalancing(name string) (Balancing, error) {
	switch b := Balancing(name); b {
	case Random, Weighted:
		return b, nil
	}
	return "", fmt.Errorf("unknown balancing %q (known: %s, %s)", name, Random, Weighted)
}

// loadReportInterval is how often the processes report their load to a
// Weighted client: often enough for weights to follow faults of a few
// seconds.
const loadReportInterval = time.Second

// weightedServiceConfig balances on the load reports and skips processes
// whose health is not SERVING; weights count after a second of reports
// and are recomputed every half second.
var weightedServiceConfig = fmt.Sprintf(`{
  "loadBalancingConfig": [{"weighted_round_robin": {
    "enableOobLoadReport": true, "oobReportingPeriod": "%s",
    "blackoutPeriod": "1s", "weightUpdatePeriod": "0.5s"}}],
  "healthCheckConfig": {"serviceName": %q}
}`, loadReportInterval, ordersv1.OrderService_ServiceDesc.ServiceName)

// dialBalanced opens the Weighted client connection to every process.
func (c *cluster) dialBalanced() error {
	r := manual.NewBuilderWithScheme("faultrun")
	var endpoints []resolver.Endpoint
	for _, p := range c.all() {
		endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: p.grpcAddr}}})
	}
	r.InitialState(resolver.State{Endpoints: endpoints})
	conn, err := grpc.NewClient(r.Scheme()+":///ordersd", append(dialOptions(), grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(weightedServiceConfig))...)
	if err != nil {
		return err
	}
	c.balanced, c.balancedClient = conn, ordersv1.NewOrderServiceClient(conn)
	return nil
}

// nameOf names the process listening at addr ("none" when nil: the call
// reached no process).
func (c *cluster) nameOf(addr net.Addr) string {
	if addr == nil {
		return "none"
	}
	for _, p := range c.all() {
		if p.grpcAddr == addr.String() {
			return p.name
		}
	}
	return addr.String()
}

// traffic records which process each write call went to, and whether it
// succeeded.
type traffic struct {
	mu    sync.Mutex // protects calls
	calls []call
}

type call struct {
	at      time.Time
	process string
	ok      bool
}

func (t *traffic) record(process string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, call{at: time.Now(), process: process, ok: err == nil})
}

// PhaseTraffic is where the write calls of one phase of the run went.
type PhaseTraffic struct {
	// Phase is "no fault", or a fault held ("3. kill a stateless replica
	// (replica2)") or recovering (from its repair until every process
	// serves again).
	Phase string `json:"phase"`
	// Target is the process the fault hit; empty for "no fault".
	Target string `json:"target,omitempty"`
	// Calls counts the calls each process answered, OK or not.
	Calls map[string]int `json:"calls"`
	// Failed counts the calls of the phase that failed.
	Failed int `json:"failed"`
}

// Total is the number of calls in the phase.
func (p PhaseTraffic) Total() int {
	n := 0
	for _, c := range p.Calls {
		n += c
	}
	return n
}

// byPhase splits the calls into "no fault" and, for each fault, its held
// and recovering phases.
func (t *traffic) byPhase(faults []fault) []PhaseTraffic {
	t.mu.Lock()
	defer t.mu.Unlock()
	phases := []PhaseTraffic{{Phase: "no fault", Calls: map[string]int{}}}
	for i, f := range faults {
		name := fmt.Sprintf("%d. %s (%s)", i+1, f.kind.Describe(), f.target)
		phases = append(phases,
			PhaseTraffic{Phase: name + " held", Target: f.target, Calls: map[string]int{}},
			PhaseTraffic{Phase: name + " recovering", Target: f.target, Calls: map[string]int{}})
	}
	for _, c := range t.calls {
		p := &phases[0]
		for i, f := range faults {
			switch {
			case !c.at.Before(f.at) && c.at.Before(f.repaired):
				p = &phases[1+2*i]
			case !c.at.Before(f.repaired) && c.at.Before(f.recovered):
				p = &phases[2+2*i]
			}
		}
		p.Calls[c.process]++
		if !c.ok {
			p.Failed++
		}
	}
	return phases
}

// printTraffic writes each phase's share of calls per process.
func printTraffic(out io.Writer, phases []PhaseTraffic, processes []string) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "write calls per process\tcalls\t")
	for _, p := range processes {
		fmt.Fprintf(tw, "%s\t", p)
	}
	fmt.Fprintln(tw, "failed\t")
	for _, ph := range phases {
		total := ph.Total()
		if total == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t", ph.Phase, total)
		for _, p := range processes {
			fmt.Fprintf(tw, "%.0f%%\t", 100*float64(ph.Calls[p])/float64(total))
		}
		fmt.Fprintf(tw, "%d\t\n", ph.Failed)
	}
	tw.Flush()
}
