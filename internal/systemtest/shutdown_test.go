package systemtest

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/server"
)

const (
	// shutdownEvents is how many created events the shutdown test stores:
	// enough that what the "unsent" consumer fetches at once (its
	// max_in_flight, 1000) is more than fits in a 64 KiB flow-control
	// window and the sockets' buffers (about 575 events here).
	shutdownEvents = 1500
	// heldAckWait is the ack wait of the consumer whose deliveries are held
	// unacked across the restart: short, so they come back within the test.
	heldAckWait = 2 * time.Second
	// unsentAckWait is the ack wait of the consumer whose fetched but unsent
	// events must come back at once: far longer than a restart of a race-
	// enabled ordersd on a loaded machine and the check after it, so an
	// event that is back within releasedWithin was released, not redelivered
	// after its ack wait.
	unsentAckWait = 2 * time.Minute
	// releasedWithin bounds how long after the restart every released event
	// must have been delivered again (a few fetches; generous for a loaded
	// machine, and still far from unsentAckWait).
	releasedWithin = 20 * time.Second
	// shuttingDownHint is what the server tells the streams it ends on
	// shutdown: reconnect, and how a watch resumes.
	shuttingDownHint = server.ShuttingDownMessage
)

// SIGTERM to ordersd while it serves every kind of stream keeps each of
// the Shutdown promises (docs/guarantees.md and docs/production.md):
//   - health turns NOT_SERVING before the gRPC listener closes;
//   - open ConsumeOrders and WatchOrders streams end with UNAVAILABLE and
//     the hint to reconnect;
//   - events fetched for a client but not sent to it are released: after a
//     restart on the same data they are delivered again at once, long
//     before their ack wait;
//   - events delivered but not acked come back after their ack wait, with
//     the next delivery attempt;
//   - nothing is lost: every created event is delivered and acked in the end;
//   - auto_ack acknowledges what it sends, so none of it is redelivered.
func TestSIGTERMShutdownKeepsItsPromises(t *testing.T) {
	dataDir := t.TempDir()
	natsAddr := freePorts(t, 1)[0]
	child := startChild(t, dataDir, "--nats-listen", natsAddr, "--nats-listen-token", "inspect")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var creating sync.WaitGroup
	for w := range 8 {
		creating.Go(func() {
			for i := w; i < shutdownEvents; i += 8 {
				if _, err := child.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", CurrencyCode: "EUR",
					Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1, UnitPriceMinor: 1}}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	creating.Wait()
	if t.Failed() {
		t.FailNow()
	}
	all := storedSequences(ctx, t, natsAddr, shutdownEvents)

	checkAutoAck(ctx, t, child, natsAddr, all)

	// held: a client holds max_in_flight deliveries, unacked.
	held := consumeRequest("held", 5, heldAckWait)
	heldStream, err := child.client.ConsumeOrders(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	heldAt := map[uint64]time.Time{}
	for len(heldAt) < int(held.GetMaxInFlight()) {
		res, err := heldStream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetEvent() != nil {
			heldAt[res.GetEvent().GetSequence()] = time.Now()
		}
	}

	// unsent: a client on a connection with a fixed 64 KiB window reads a
	// few events, then stops reading, so that ordersd has fetched far more
	// than it could send: its send waits on flow control at shutdown.
	slowConn, err := grpc.NewClient(child.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer slowConn.Close()
	unsent := consumeRequest("unsent", 1000, unsentAckWait)
	unsentStream, err := ordersv1.NewOrderServiceClient(slowConn).ConsumeOrders(ctx, unsent)
	if err != nil {
		t.Fatal(err)
	}
	received := map[uint64]bool{} // delivered to the unsent client, never acked
	for len(received) < 10 {
		res, err := unsentStream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetEvent() != nil {
			received[res.GetEvent().GetSequence()] = true
		}
	}

	// A watcher, replaying everything and then following the tail.
	watch, err := child.client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetCaughtUp() {
			break
		}
	}
	time.Sleep(2 * time.Second) // let the unsent consumer's fetch fill the window

	observer := observeShutdown(t, child.addr)
	start := time.Now()
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// The watch ends first: that is ordersd ending its streams. Only then
	// does the unsent client read again, so that ordersd's send returns
	// into a stream that is ending, with the rest of its fetch unsent.
	checkEndsWithHint(t, "WatchOrders", func() error {
		for {
			if _, err := watch.Recv(); err != nil {
				return err
			}
		}
	})
	checkEndsWithHint(t, "ConsumeOrders (held)", func() error {
		for {
			if _, err := heldStream.Recv(); err != nil {
				return err
			}
		}
	})
	checkEndsWithHint(t, "ConsumeOrders (unsent)", func() error {
		for {
			res, err := unsentStream.Recv()
			if err != nil {
				return err
			}
			if res.GetEvent() != nil {
				received[res.GetEvent().GetSequence()] = true
			}
		}
	})
	select {
	case err := <-child.exited:
		if err != nil {
			t.Fatalf("ordersd exited with %v", err)
		}
		child.exited <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("ordersd did not exit within 20s of SIGTERM")
	}
	exitedAfter := time.Since(start)
	observer.stop()
	observer.check(t)
	t.Logf("exited %v after SIGTERM; the unsent client had %d of %d events when its stream ended",
		exitedAfter.Round(time.Millisecond), len(received), shutdownEvents)
	if len(received) >= int(unsent.GetMaxInFlight()) {
		t.Fatal("the unsent client received every event: nothing was left fetched but unsent, the test proves nothing")
	}

	// Restart on the same data.
	natsAddr = freePorts(t, 1)[0]
	next := startChild(t, dataDir, "--nats-listen", natsAddr, "--nats-listen-token", "inspect")
	restarted := time.Now()

	// Fetched but unsent: back at once. Delivered but unacked: not yet.
	unsent.MaxInFlight = 1000
	again, err := next.client.ConsumeOrders(ctx, unsent)
	if err != nil {
		t.Fatal(err)
	}
	var unsentAcks []*ordersv1.Ack
	want := len(all) - len(received)
	err = readUntil(receive(t, again), releasedWithin, func(res *ordersv1.ConsumeOrdersResponse) bool {
		seq := res.GetEvent().GetSequence()
		if received[seq] {
			t.Errorf("event %d, delivered and not acked, came back %v after the restart, before its ack wait (%v)",
				seq, time.Since(restarted).Round(time.Millisecond), unsentAckWait)
		}
		unsentAcks = append(unsentAcks, &ordersv1.Ack{AckToken: res.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK})
		return len(unsentAcks) >= want
	})
	if err != nil {
		t.Errorf("released events: %d of %d delivered again within %v of the restart: %v (fetched but unsent events must be back at once, not after their %v ack wait)",
			len(unsentAcks), want, releasedWithin, err, unsentAckWait)
	}
	ackAll(ctx, t, next.client, unsentAcks)

	// Held: back after their ack wait, then everything delivered and acked.
	held.MaxInFlight = 1000
	heldAgain, err := next.client.ConsumeOrders(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	var heldAcks []*ordersv1.Ack
	seen := map[uint64]bool{}
	err = readUntil(receive(t, heldAgain), releasedWithin+heldAckWait, func(res *ordersv1.ConsumeOrdersResponse) bool {
		seq := res.GetEvent().GetSequence()
		if first, ok := heldAt[seq]; ok {
			if res.GetDeliveryAttempt() < 2 {
				t.Errorf("held event %d delivered again as attempt %d", seq, res.GetDeliveryAttempt())
			}
			if since := time.Since(first); since < heldAckWait {
				t.Errorf("held event %d came back %v after its delivery, before its ack wait (%v)", seq, since, heldAckWait)
			}
		}
		seen[seq] = true
		heldAcks = append(heldAcks, &ordersv1.Ack{AckToken: res.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK})
		if len(heldAcks) == 100 { // ack as we go: credit comes back, and nothing outlives its 2s ack wait
			ackAll(ctx, t, next.client, heldAcks)
			heldAcks = nil
		}
		return len(seen) >= len(all)
	})
	if err != nil {
		t.Errorf("held consumer: %d of %d events delivered after the restart: %v", len(seen), len(all), err)
	}
	for seq := range heldAt {
		if !seen[seq] {
			t.Errorf("held event %d never came back", seq)
		}
	}
	ackAll(ctx, t, next.client, heldAcks)

	// Nothing lost: the held consumer has delivered and acked everything;
	// the unsent one everything but what its client holds, still pending
	// its ack wait.
	js := inspectJetStream(t, natsAddr)
	checkConsumer(ctx, t, js, "held", 0, 0)
	checkConsumer(ctx, t, js, "unsent", 0, len(received))
	t.Logf("restart: %d released events back within %v, %d held events back after their ack wait; %v from SIGTERM to the end",
		len(unsentAcks), releasedWithin, len(heldAt), time.Since(start).Round(time.Millisecond))
}

// consumeRequest asks for the created events of a work-queue consumer.
func consumeRequest(consumer string, maxInFlight int32, ackWait time.Duration) *ordersv1.ConsumeOrdersRequest {
	return &ordersv1.ConsumeOrdersRequest{Consumer: consumer, Statuses: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight: maxInFlight, Settings: &ordersv1.ConsumerSettings{AckWait: durationpb.New(ackWait)},
		HeartbeatInterval: durationpb.New(time.Second)}
}

// checkAutoAck consumes every event with auto_ack, then waits past the ack
// wait: auto_ack acknowledged each event it sent (at most once, as the
// proto says: no token, nothing to ack, never redelivered), so none comes
// again and JetStream waits for no ack.
func checkAutoAck(ctx context.Context, t *testing.T, child *childOrdersd, natsAddr string, all map[uint64]bool) {
	t.Helper()
	req := consumeRequest("auto", 1000, heldAckWait)
	req.AutoAck = true
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := child.client.ConsumeOrders(streamCtx, req)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	events := receive(t, stream)
	err = readUntil(events, releasedWithin, func(res *ordersv1.ConsumeOrdersResponse) bool {
		seq := res.GetEvent().GetSequence()
		if got[seq] || res.GetDeliveryAttempt() > 1 {
			t.Fatalf("auto_ack: event %d delivered again (attempt %d)", seq, res.GetDeliveryAttempt())
		}
		if res.GetAckToken() != "" {
			t.Fatalf("auto_ack: event %d came with an ack token", seq)
		}
		got[seq] = true
		return len(got) == len(all)
	})
	if err != nil {
		t.Fatalf("auto_ack: %d of %d events delivered: %v", len(got), len(all), err)
	}
	// Everything came once; past the ack wait, twice over, nothing comes again.
	err = readUntil(events, 2*heldAckWait, func(res *ordersv1.ConsumeOrdersResponse) bool {
		t.Errorf("auto_ack: event %d delivered again (attempt %d) after its ack wait", res.GetEvent().GetSequence(), res.GetDeliveryAttempt())
		return true
	})
	if err != nil && !errors.Is(err, errReadTimedOut) {
		t.Fatalf("auto_ack stream: %v", err)
	}
	cancel()
	checkConsumer(ctx, t, inspectJetStream(t, natsAddr), "auto", 0, 0)
}

var errReadTimedOut = errors.New("timed out")

// consumeResult is one Recv of a ConsumeOrders stream.
type consumeResult struct {
	res *ordersv1.ConsumeOrdersResponse
	err error
}

// receive reads stream in a goroutine of its own, until it ends or the
// test does, so that several readUntil calls can take turns on it.
func receive(t *testing.T, stream grpc.ServerStreamingClient[ordersv1.ConsumeOrdersResponse]) <-chan consumeResult {
	results := make(chan consumeResult)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			res, err := stream.Recv()
			select {
			case results <- consumeResult{res, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return results
}

// readUntil hands the events from results to take until take returns true
// (nil), the stream ends (its error), or d passes (errReadTimedOut).
func readUntil(results <-chan consumeResult, d time.Duration, take func(*ordersv1.ConsumeOrdersResponse) bool) error {
	timeout := time.After(d)
	for {
		select {
		case r := <-results:
			if r.err != nil {
				return r.err
			}
			if r.res.GetEvent() != nil && take(r.res) {
				return nil
			}
		case <-timeout:
			return errReadTimedOut
		}
	}
}

// checkEndsWithHint runs recv until it fails, and checks that it failed
// with UNAVAILABLE and the shutdown hint within 15s.
func checkEndsWithHint(t *testing.T, name string, recv func() error) {
	t.Helper()
	ended := make(chan error, 1)
	go func() { ended <- recv() }()
	select {
	case err := <-ended:
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != shuttingDownHint {
			t.Errorf("%s ended with %v, want UNAVAILABLE: %q", name, err, shuttingDownHint)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not end within 15s of SIGTERM", name)
	}
}

func ackAll(ctx context.Context, t *testing.T, client ordersv1.OrderServiceClient, acks []*ordersv1.Ack) {
	t.Helper()
	for len(acks) > 0 {
		batch := acks[:min(len(acks), 200)]
		acks = acks[len(batch):]
		res, err := client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: batch})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetResults()) != len(batch) {
			t.Fatalf("%d results for %d acks", len(res.GetResults()), len(batch))
		}
		for _, r := range res.GetResults() {
			if !r.GetConfirmed() {
				t.Errorf("ack not confirmed: %s", r.GetError())
			}
		}
	}
}

// inspectJetStream connects to a child's NATS listener (token "inspect").
func inspectJetStream(t *testing.T, natsAddr string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://"+natsAddr, nats.Token("inspect"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// storedSequences returns the stream sequences of the n events stored.
func storedSequences(ctx context.Context, t *testing.T, natsAddr string, n int) map[uint64]bool {
	t.Helper()
	seqs := map[uint64]bool{}
	if err := walkStream(ctx, inspectJetStream(t, natsAddr), func(msg jetstream.Msg) error {
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		seqs[meta.Sequence.Stream] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != n {
		t.Fatalf("%d events stored, want %d", len(seqs), n)
	}
	return seqs
}

// checkConsumer checks a consumer's pending and unacknowledged counts.
func checkConsumer(ctx context.Context, t *testing.T, js jetstream.JetStream, name string, pending, ackPending int) {
	t.Helper()
	var info *jetstream.ConsumerInfo
	// Acks confirmed to the client are applied; give the counts a moment
	// to settle all the same (they are read from the consumer's leader).
	waitFor(5*time.Second, func() bool {
		cons, err := js.Consumer(ctx, "ORDERS", name)
		if err != nil {
			return false
		}
		info = cons.CachedInfo()
		return info.NumPending == uint64(pending) && info.NumAckPending == ackPending
	})
	if info == nil {
		t.Fatalf("consumer %s: no info", name)
	}
	if info.NumPending != uint64(pending) || info.NumAckPending != ackPending {
		t.Errorf("consumer %s: %d pending, %d awaiting acks, want %d and %d (redelivered %d)",
			name, info.NumPending, info.NumAckPending, pending, ackPending, info.NumRedelivered)
	}
}

// shutdownObserver watches a server go down from outside: a health Watch
// stream and a health Check poller (each on its own connection), and a
// TCP dialer that notes when the listener stops accepting.
type shutdownObserver struct {
	addr    string
	start   time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex    // protects what follows
	watched []observation // health Watch updates
	checked []observation // changes of what Check answers
	refused time.Duration // when a dial was first refused; 0: never
}

type observation struct {
	at   time.Duration // since the observer started
	what string
}

func observeShutdown(t *testing.T, addr string) *shutdownObserver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := &shutdownObserver{addr: addr, start: time.Now(), cancel: cancel}
	newHealth := func() healthpb.HealthClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	// The watch ends on its own once it has seen NOT_SERVING; the probes go
	// on until stop.
	watchCtx, hangUp := context.WithCancel(ctx)
	watch, err := newHealth().Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := watch.Recv()
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch before SIGTERM: %v, %v", res, err)
	}
	check := newHealth()
	if _, err := check.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	o.wg.Go(func() {
		for {
			res, err := watch.Recv()
			if err != nil {
				return
			}
			o.note(&o.watched, res.GetStatus().String())
			if res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				// Seen: hang up, as a load balancer drops a backend.
				hangUp()
				return
			}
		}
	})
	o.wg.Go(func() {
		last := ""
		for ctx.Err() == nil {
			callCtx, cancelCall := context.WithTimeout(ctx, time.Second)
			res, err := check.Check(callCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
			cancelCall()
			what := res.GetStatus().String()
			if err != nil {
				if ctx.Err() != nil {
					return // stopped, not an answer of ordersd's
				}
				what = status.Code(err).String()
			}
			if what != last {
				o.note(&o.checked, what)
				last = what
			}
			time.Sleep(time.Millisecond)
		}
	})
	o.wg.Go(func() {
		for ctx.Err() == nil {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				o.mu.Lock()
				o.refused = time.Since(o.start)
				o.mu.Unlock()
				return
			}
			conn.Close()
			time.Sleep(time.Millisecond)
		}
	})
	return o
}

func (o *shutdownObserver) note(list *[]observation, what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	*list = append(*list, observation{time.Since(o.start), what})
}

func (o *shutdownObserver) stop() {
	o.cancel()
	o.wg.Wait()
}

// check wants NOT_SERVING seen on the health Watch before the listener
// refused a connection.
func (o *shutdownObserver) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, obs := range o.watched {
		b.WriteString(" watch " + obs.what + "@" + obs.at.Round(time.Microsecond).String())
	}
	for _, obs := range o.checked {
		b.WriteString(" check " + obs.what + "@" + obs.at.Round(time.Microsecond).String())
	}
	t.Logf("after SIGTERM:%s; listener refused from %v", b.String(), o.refused.Round(time.Microsecond))
	var notServing time.Duration
	for _, obs := range o.watched {
		if obs.what == healthpb.HealthCheckResponse_NOT_SERVING.String() {
			notServing = obs.at
			break
		}
	}
	switch {
	case notServing == 0:
		t.Error("health never reported NOT_SERVING on its Watch stream")
	case o.refused == 0:
		t.Error("the gRPC listener never refused a connection")
	case o.refused < notServing:
		t.Errorf("the gRPC listener closed (%v after SIGTERM) before health reported NOT_SERVING (%v)", o.refused, notServing)
	}
}
