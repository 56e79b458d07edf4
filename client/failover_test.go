package client_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ordersd/ordersd/client"
	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// logCounter counts the log lines of a client that contain a phrase.
type logCounter struct {
	mu    sync.Mutex // protects lines
	lines []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(phrase string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, phrase) {
			n++
		}
	}
	return n
}

func newOrder() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{CustomerId: "failover", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 1, UnitPriceMinor: 100}}}
}

// Two nodes on one NATS; one is killed (every connection cut at once,
// mid-call), comes back, then the other is stopped as in a rolling
// restart, while writers create orders without request ids, a Consume
// handles every event and a Watch follows every event through one client
// that balances across both. Every create succeeds and is stored once (a
// create cut off mid-call is retried on the other node with the
// request_id the client generated), the watch hands over every event
// exactly once, and every event is handled once and acked: no ack is
// lost; an event sent on a connection as it was cut is redelivered after
// its ack wait.
func TestHelpersSurviveNodeDeaths(t *testing.T) {
	nodes := testnode.StartShared(t, 2, testnode.Options{})
	a, b := nodes[0], nodes[1]
	logs := &logCounter{}
	sent := &attempts{ids: map[string]int{}}
	c, err := client.Dial(a.Addr()+","+b.Addr(), client.WithInsecure(), client.WithLogger(slog.New(logs)),
		client.WithDialOptions(grpc.WithStatsHandler(sent)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := testsupport.Context(t, 4*time.Minute)

	// The watch: every event, each exactly once.
	var watchMu sync.Mutex
	seen := map[uint64]int{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- c.Watch(watchCtx, client.WatchOptions{ReplayAll: true, Heartbeat: time.Second}, func(_ context.Context, u client.WatchUpdate) error {
			if u.Event != nil {
				watchMu.Lock()
				seen[u.Event.GetSequence()]++
				watchMu.Unlock()
			}
			return nil
		})
	}()

	// The work queue: every created event handled and acked; handlers
	// take a while, so some run while their stream's node dies. The ack
	// wait outlasts the checks below: an ack lost would leave its event
	// pending, not redelivered and acked again.
	const (
		ackWait     = time.Minute
		maxInFlight = 16
	)
	var handled sync.Map // order id → times handled
	consumeCtx, stopConsume := context.WithCancel(ctx)
	consumeDone := make(chan error, 1)
	go func() {
		consumeDone <- c.Consume(consumeCtx, "failover", client.ConsumeOptions{
			Settings:  &ordersv1.ConsumerSettings{AckWait: durationpb.New(ackWait)},
			Heartbeat: time.Second, MaxInFlight: maxInFlight,
		}, func(ctx context.Context, m *client.Message) error {
			time.Sleep(20 * time.Millisecond)
			n, _ := handled.LoadOrStore(m.Event.GetOrder().GetOrderId(), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			return nil
		})
	}()

	// Writers: creates without request ids, until told to stop.
	var (
		created   sync.Map // order id → struct{}
		failures  atomic.Int32
		okCreates atomic.Int32
		dupes     atomic.Int32 // creates stored by an attempt cut off mid-call, recognised on retry
		writers   sync.WaitGroup
	)
	writing, stopWriting := context.WithCancel(ctx)
	for range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for writing.Err() == nil {
				callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
				res, err := c.CreateOrder(callCtx, newOrder())
				cancel()
				if err != nil {
					failures.Add(1)
					t.Errorf("create failed: %v", err)
					continue
				}
				okCreates.Add(1)
				if res.GetDuplicate() {
					dupes.Add(1)
				}
				if _, dup := created.LoadOrStore(res.GetOrder().GetOrderId(), struct{}{}); dup {
					t.Errorf("order %s returned by two creates", res.GetOrder().GetOrderId())
				}
			}
		}()
	}
	waitCreates := func(n int32) {
		t.Helper()
		target := okCreates.Load() + n
		for okCreates.Load() < target {
			if ctx.Err() != nil {
				t.Fatal("creates stalled")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitCreates(200)
	if err := a.Kill(); err != nil {
		t.Fatalf("kill a: %v", err)
	}
	waitCreates(200)
	if err := a.Restart(); err != nil {
		t.Fatalf("restart a: %v", err)
	}
	waitCreates(200)
	if err := b.Stop(); err != nil { // as a rolling restart does (SIGTERM)
		t.Fatalf("stop b: %v", err)
	}
	lastDeath := time.Now()
	waitCreates(200)
	stopWriting()
	writers.Wait()

	// The stream holds exactly one created event per successful create.
	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := info.State.Msgs
	if stored != uint64(okCreates.Load()) {
		t.Errorf("the stream holds %d events for %d successful creates: a retried create was stored twice, or one was lost", stored, okCreates.Load())
	}
	retried, total := sent.retried()
	if retried < 0 {
		t.Fatalf("a CreateOrder attempt went out without a request_id")
	}
	t.Logf("%d creates; %d request ids of which %d were sent more than once (retried on the other node), %d answered as duplicates", okCreates.Load(), total, retried, dupes.Load())
	if retried == 0 {
		t.Error("no create was cut off mid-call: the kills proved nothing about retries")
	}

	// The watch hands over every stored event exactly once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		watchMu.Lock()
		n := len(seen)
		watchMu.Unlock()
		if n >= int(stored) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	if err := <-watchDone; err != nil {
		t.Errorf("watch: %v", err)
	}
	for seq := uint64(1); seq <= stored; seq++ {
		if seen[seq] != 1 {
			t.Errorf("watch handed over event %d %d times, want once", seq, seen[seq])
		}
	}
	if len(seen) != int(stored) {
		t.Errorf("watch handed over %d distinct events, the stream holds %d", len(seen), stored)
	}

	// Every handled event is acked: what is still waiting for an ack after
	// the writes is only what never reached a handler (sent on a
	// connection as it was cut, at most MaxInFlight of them).
	cons, err := stream.Consumer(ctx, "failover")
	if err != nil {
		t.Fatal(err)
	}
	unhandled := func() int {
		n := 0
		created.Range(func(id, _ any) bool {
			if _, ok := handled.Load(id); !ok {
				n++
			}
			return true
		})
		return n
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumPending == 0 && ci.NumAckPending == unhandled() {
			if ci.NumAckPending > maxInFlight {
				t.Fatalf("%d events never reached a handler; at most %d can be in flight when a connection is cut", ci.NumAckPending, maxInFlight)
			}
			t.Logf("%d events sent as a connection was cut wait for their redelivery", ci.NumAckPending)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer after the writes: %+v, %v; want every one of %d events acked but the %d never handled: acks were lost", ci, err, stored, unhandled())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Those are redelivered once their ack wait has passed, and acked.
	deadline = lastDeath.Add(ackWait + 30*time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream == stored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s after the last node died: %+v, %v; want every one of %d events acked", time.Since(lastDeath).Round(time.Second), ci, err, stored)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopConsume()
	if err := <-consumeDone; err != nil {
		t.Errorf("consume: %v", err)
	}
	created.Range(func(id, _ any) bool {
		n, ok := handled.Load(id)
		switch {
		case !ok:
			t.Errorf("order %s was never handled", id)
		case n.(*atomic.Int32).Load() > 1:
			// Delivered again after it was handled: its ack was lost.
			t.Errorf("order %s was handled %d times", id, n.(*atomic.Int32).Load())
		}
		return true
	})
	if n := logs.count("watch stream broke"); n == 0 {
		t.Error("the watch never had to resume: no node died under it")
	}
	if n := logs.count("consume stream broke"); n == 0 {
		t.Error("the consume stream never had to reopen: no node died under it")
	}
}
