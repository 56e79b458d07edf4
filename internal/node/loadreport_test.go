package node

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/weightedroundrobin" // the policy under test
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	orcaservice "github.com/cncf/xds/go/xds/service/orca/v3"

	"github.com/ordersd/ordersd/consumers"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	ordersserver "github.com/ordersd/ordersd/server"
)

// countingStore counts the GetOrder reads a node serves, and makes each
// take at least delay: a node whose reads are slow keeps calls in flight,
// as one behind a slow JetStream leader or on a busy machine does.
type countingStore struct {
	ordersserver.OrderStore
	delay time.Duration
	gets  atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, orderID string) (*ordersv1.Order, error) {
	s.gets.Add(1)
	time.Sleep(s.delay)
	return s.OrderStore.Get(ctx, orderID)
}

// A client balancing with weighted_round_robin on the nodes' load reports,
// out of band or in each call's trailer, sends most calls to the idle node
// of two: the other keeps calls in flight (each of its reads takes 30ms),
// which its reports show as a high application utilization. Round robin
// would split the calls evenly; measured by the calls each node served.
func TestWeightedRoundRobinSendsMoreToTheIdleNode(t *testing.T) {
	for _, tc := range []struct{ name, policy string }{
		{"out-of-band reports", `{"enableOobLoadReport": true, "oobReportingPeriod": "0.1s", "blackoutPeriod": "0.1s", "weightUpdatePeriod": "0.1s"}`},
		{"per-call reports", `{"blackoutPeriod": "0.1s", "weightUpdatePeriod": "0.1s"}`},
	} {
		t.Run(tc.name, func(t *testing.T) { testWeightedRoundRobin(t, tc.policy) })
	}
}

func testWeightedRoundRobin(t *testing.T, policy string) {
	nc := testsupport.Connect(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	start := func(delay time.Duration) (*countingStore, string) {
		store := &countingStore{delay: delay}
		svc, err := Assemble(testsupport.Context(t, 10*time.Second), nc, ServiceOptions{
			Tokens: consumers.RandomAckTokens(),
			// Reports every 100ms; a call in flight on average counts as
			// a fully used node, so that the loaded node's utilization
			// stands above the CPU utilization both nodes share in this
			// one process.
			LoadReport: LoadReportOptions{MinInterval: 100 * time.Millisecond, CallsCapacity: 1},
			Tune: func(d *ordersserver.Deps) {
				store.OrderStore = d.Store
				d.Store = store
			},
		}, testsupport.Logger())
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = svc.GRPC.Serve(lis) }()
		t.Cleanup(func() { _ = svc.Shutdown(5 * time.Second) })
		return store, lis.Addr().String()
	}
	idle, idleAddr := start(0)
	loaded, loadedAddr := start(30 * time.Millisecond)

	r := manual.NewBuilderWithScheme("wrr")
	r.InitialState(resolver.State{Endpoints: []resolver.Endpoint{
		{Addresses: []resolver.Address{{Addr: idleAddr}}},
		{Addresses: []resolver.Address{{Addr: loadedAddr}}},
	}})
	conn, err := grpc.NewClient(r.Scheme()+":///ordersd",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"weighted_round_robin": `+policy+`}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := ordersv1.NewOrderServiceClient(conn)
	ctx := testsupport.Context(t, 2*time.Minute)
	created, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c1", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "sku-1", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	get := &ordersv1.GetOrderRequest{OrderId: created.GetOrder().GetOrderId()}

	// Rounds of 200 reads from 8 callers at once, until one round sends
	// at least three in four to the idle node; round robin sends half.
	const (
		rounds   = 30
		perRound = 200
		callers  = 8
	)
	var shares []string
	for round := range rounds {
		idleBefore, loadedBefore := idle.gets.Load(), loaded.gets.Load()
		var (
			wg   sync.WaitGroup
			next atomic.Int64
			errs = make(chan error, callers)
		)
		for range callers {
			wg.Go(func() {
				for next.Add(1) <= perRound {
					if _, err := client.GetOrder(ctx, get); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("GetOrder in round %d: %v", round, err)
		}
		toIdle, toLoaded := idle.gets.Load()-idleBefore, loaded.gets.Load()-loadedBefore
		shares = append(shares, fmt.Sprintf("%d:%d", toIdle, toLoaded))
		if toIdle >= 3*toLoaded {
			t.Logf("round %d sent %d reads to the idle node and %d to the loaded one; rounds (idle:loaded): %v", round, toIdle, toLoaded, shares)
			return
		}
	}
	t.Fatalf("no round of %d sent three in four reads to the idle node; rounds (idle:loaded): %v", rounds, shares)
}

// A report carries the period's rates and the larger of CPU utilization
// and calls in flight over the capacity; errors are the node's faults only.
func TestLoadReportFigures(t *testing.T) {
	l := newLoadReporter(LoadReportOptions{MinInterval: time.Second, CallsCapacity: 4})
	from := loadSample{at: time.Unix(100, 0), finished: 10, failed: 1, busy: time.Second, cpu: 3 * time.Second}
	// In 2s: 40 calls (4 of them the node's failures) busy for 12s in all,
	// 2 still running; 1s of CPU.
	to := loadSample{at: time.Unix(102, 0), finished: 50, failed: 5, busy: 13 * time.Second, cpu: 4 * time.Second, inFlight: 2}
	l.record(from, to)
	m := l.recorder.ServerMetrics()
	cpu := 0.5 / float64(cpuCapacity())
	if m.QPS != 20 || m.EPS != 2 || m.CPUUtilization != cpu || m.AppUtilization != (6.0+2)/4 {
		t.Fatalf("QPS %v, EPS %v, CPU %v, application %v; want 20, 2, %v, 2", m.QPS, m.EPS, m.CPUUtilization, m.AppUtilization, cpu)
	}

	for code, fault := range map[codes.Code]bool{codes.OK: false, codes.NotFound: false, codes.InvalidArgument: false,
		codes.FailedPrecondition: false, codes.Aborted: false, codes.PermissionDenied: false,
		codes.Unavailable: true, codes.Internal: true, codes.DeadlineExceeded: true} {
		if got := nodeFault(status.Error(code, "x")); got != fault {
			t.Errorf("nodeFault(%v) = %v", code, got)
		}
	}
}

// A client's load-report stream gets a report at once and ends with
// UNAVAILABLE when the node shuts down: it does not hold the graceful stop
// until the shutdown timeout cuts it off.
func TestLoadReportStreamEndsOnShutdown(t *testing.T) {
	nc := testsupport.Connect(t, testsupport.StartNATS(t, testsupport.InProcessOnly))
	svc, err := Assemble(testsupport.Context(t, 10*time.Second), nc, ServiceOptions{Tokens: consumers.RandomAckTokens()}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.GRPC.Serve(lis) }()
	t.Cleanup(func() { _ = svc.Shutdown(time.Second) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stream, err := orcaservice.NewOpenRcaServiceClient(conn).StreamCoreMetrics(testsupport.Context(t, 30*time.Second),
		&orcaservice.OrcaLoadReportRequest{ReportInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first report: %v", err)
	}
	if err := svc.Shutdown(10 * time.Second); err != nil {
		t.Errorf("Shutdown with a load-report stream open: %v", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("the load-report stream ended with %v, want UNAVAILABLE", err)
			}
			return
		}
	}
}
