package faultrun

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

const (
	// streamHeartbeat is the heartbeat interval the run's streams ask for.
	streamHeartbeat = time.Second
	// maxElection is nats-server's longest leader election: 4 to 9 s after
	// a leader dies (randomized, not configurable), the stream or consumer
	// it led has none.
	maxElection = 9 * time.Second
)

// stallLimit is how long a stream may send nothing, not even a heartbeat,
// before the run counts it as stalled and reopens it. ordersd beats while
// it waits on JetStream, but a stream can be silent for an election (up to
// maxElection) plus one JetStream operation begun just before it was
// answered and timed out (opTimeout, ordersd's --nats-timeout) plus a
// heartbeat interval. The margin on top, half an election again (4.5 s),
// is for a loaded two-core machine: five race-enabled ordersd processes,
// their NATS servers and the run's clients, where a timer may fire
// seconds late. The 10 s this replaced sat inside 4-9 s elections plus
// --nats-timeout: a slow election read as a stall.
func stallLimit(opTimeout time.Duration) time.Duration {
	return maxElection + opTimeout + streamHeartbeat + maxElection/2
}

// QueueStats describe the work-queue client.
type QueueStats struct {
	Delivered   int `json:"delivered"`   // events received
	Redelivered int `json:"redelivered"` // of which seen before (at-least-once)
	// AfterConfirmedAck counts the deliveries of an event whose ack was
	// confirmed (each is reported with its timing), told apart by
	// classifyAfterAck: Raced those JetStream sent before the ack was
	// confirmed (the ack wait ran out first), AcrossElection those sent
	// after a consumer leader was elected following the confirmation (the
	// one window docs/guarantees.md gives a replicated consumer; reported,
	// not failed), LostAcks every other: the consumer went back past a
	// confirmed ack, which fails the run.
	AfterConfirmedAck int `json:"after_confirmed_ack"`
	Raced             int `json:"raced"`
	AcrossElection    int `json:"across_election"`
	LostAcks          int `json:"lost_acks"`
	// Elections counts the consumer leaders elected during the run.
	Elections  int `json:"consumer_leader_elections"`
	Missing    int `json:"missing"`    // created events never delivered
	Reopened   int `json:"reopened"`   // streams that ended and were opened again
	Stalls     int `json:"stalls"`     // streams silent past stallLimit
	Unexpected int `json:"unexpected"` // streams or acks that failed with a non-retryable status
}

// WatchStats describe the watcher.
type WatchStats struct {
	Events     int           `json:"events"`      // events received
	Gaps       int           `json:"gaps"`        // times a sequence was skipped
	Repeated   int           `json:"repeated"`    // events received twice
	Reopened   int           `json:"reopened"`    // streams that ended and were resumed
	Stalls     int           `json:"stalls"`      // streams silent past stallLimit
	Unexpected int           `json:"unexpected"`  // streams that ended with a non-retryable status
	LongestLag time.Duration `json:"longest_lag"` // the most an event arrived after it was stored
	LastSeq    uint64        `json:"last_seq"`    // the last sequence received
}

// queueAckWait is the ack wait of the run's work queue.
const queueAckWait = 5 * time.Second

// queueConsumer is the durable consumer of the run's work queue.
const queueConsumer = "fault-run"

// queueReader consumes created events through ConsumeOrders and acks each
// one, reopening its stream on any process whenever it ends.
type queueReader struct {
	c              *cluster
	mu             sync.Mutex
	stats          QueueStats
	seen           map[string]int          // order id → deliveries
	confirmed      map[string]confirmedAck // order id → its first confirmed ack
	afterAck       []afterAck              // the deliveries of events whose ack was confirmed, to classify
	afterConfirmed []string                // those the run allows, with their timing
	lostAcks       []string                // those it fails on (LostAcks), with their timing
	errors         []string
	acking         sync.WaitGroup // the acks in flight
}

// afterAck is one delivery of an event whose ack was confirmed before it
// came.
type afterAck struct {
	by       string // the process that delivered it
	orderID  string
	seq      uint64 // the event's stream sequence
	attempt  uint64
	received time.Time
	acked    confirmedAck
}

// confirmedAck is when and on which process the ack of an event was
// confirmed, and the delivery (attempt, when it was received) whose token
// it used.
type confirmedAck struct {
	at       time.Time
	by       string
	attempt  uint64
	received time.Time
}

func (q *queueReader) run(ctx context.Context) {
	req := &ordersv1.ConsumeOrdersRequest{
		Consumer:          queueConsumer,
		Statuses:          []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED},
		MaxInFlight:       64,
		HeartbeatInterval: durationpb.New(streamHeartbeat),
		Settings:          &ordersv1.ConsumerSettings{AckWait: durationpb.New(queueAckWait)},
	}
	for ctx.Err() == nil {
		p := q.c.randomReplica()
		err := readStream(ctx, q.c.stallAfter, func(ctx context.Context) (func() (any, error), error) {
			stream, err := p.client.ConsumeOrders(ctx, req)
			return func() (any, error) { return stream.Recv() }, err
		}, func(msg any) {
			res := msg.(*ordersv1.ConsumeOrdersResponse)
			if res.GetHeartbeat() {
				return
			}
			orderID, attempt, received := res.GetEvent().GetOrder().GetOrderId(), res.GetDeliveryAttempt(), time.Now()
			q.deliver(p, orderID, res.GetEvent().GetSequence(), attempt)
			// Acks go concurrently: one after the other, the last of 64
			// in flight waited for every slower one before it and passed
			// the ack wait on a loaded machine.
			q.acking.Go(func() { q.ack(ctx, orderID, attempt, received, res.GetAckToken()) })
		})
		q.ended(ctx, p, err)
		time.Sleep(100 * time.Millisecond)
	}
	q.acking.Wait()
}

// deliver records one delivery, p's, and keeps it for classifyAfterAck
// if the event's ack was confirmed before it came.
func (q *queueReader) deliver(p *process, orderID string, seq, attempt uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stats.Delivered++
	if q.seen[orderID] > 0 {
		q.stats.Redelivered++
	}
	q.seen[orderID]++
	if acked, ok := q.confirmed[orderID]; ok {
		q.stats.AfterConfirmedAck++
		q.afterAck = append(q.afterAck, afterAck{by: p.name, orderID: orderID, seq: seq, attempt: attempt, received: time.Now(), acked: acked})
	}
}

// classifyAfterAck tells apart, once the run is over and every send is
// logged, the deliveries that came after their event's ack was confirmed:
//   - raced: JetStream sent that delivery (a later attempt than the one
//     acked) before the ack was confirmed, by sends; the ack wait ran out
//     before the ack reached it;
//   - across an election: a consumer leader was elected after the
//     confirmation and no later than JetStream sent it (when sends saw
//     it go out, else when it came), by leaders;
//   - lost: any other, a confirmed ack the consumer went back past.
func (q *queueReader) classifyAfterAck(sends *SendLog, leaders *leaderLog) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.afterAck {
		key := sendKey{d.seq, d.attempt}
		report := fmt.Sprintf("%s %s delivered order %s (sequence %d, attempt %d) %v after the ack of attempt %d was confirmed (at %s on %s), %v after that delivery",
			d.received.Format(time.TimeOnly), d.by, d.orderID, d.seq, d.attempt, d.received.Sub(d.acked.at).Round(time.Millisecond), d.acked.attempt,
			d.acked.at.Format("15:04:05.000"), d.acked.by, d.acked.at.Sub(d.acked.received).Round(time.Millisecond))
		raced := d.attempt > d.acked.attempt && sends.SentBefore(d.seq, d.attempt, d.acked.at)
		sent, seen := sends.firstSentAfter(key, d.acked.at)
		switch {
		case raced:
		case seen:
			report += fmt.Sprintf(", sent %v after the confirmation", sent.Sub(d.acked.at).Round(time.Millisecond))
		default:
			sent = d.received
			report += " (its send not seen)"
		}
		switch {
		case raced:
			q.stats.Raced++
			report += ": JetStream sent it before the ack was confirmed"
		case leaders.electedBetween(d.acked.at, sent):
			q.stats.AcrossElection++
			report += ": a consumer leader was elected between the confirmation and the resend"
		default:
			q.stats.LostAcks++
			if len(q.lostAcks) < 20 {
				q.lostAcks = append(q.lostAcks, report+": a lost ack")
			}
			continue
		}
		if len(q.afterConfirmed) < 10 {
			q.afterConfirmed = append(q.afterConfirmed, report)
		}
	}
	q.stats.Elections = leaders.count()
}

// ack acks one event on any process, a few times if it is not confirmed;
// an ack that never is leaves the event for redelivery, which is allowed.
func (q *queueReader) ack(ctx context.Context, orderID string, attempt uint64, received time.Time, token string) {
	for range 5 {
		p := q.c.random()
		callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := p.client.AckOrders(callCtx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_ACK}}})
		cancel()
		if err == nil && res.GetResults()[0].GetConfirmed() {
			q.mu.Lock()
			if _, ok := q.confirmed[orderID]; !ok {
				q.confirmed[orderID] = confirmedAck{at: time.Now(), by: p.name, attempt: attempt, received: received}
			}
			q.mu.Unlock()
			return
		}
		if err != nil && !retryable(err) && ctx.Err() == nil {
			q.failed("ack on "+p.name, err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (q *queueReader) ended(ctx context.Context, p *process, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	q.stats.Reopened++
	switch {
	case err == errStalled:
		q.stats.Stalls++
		q.note("consume on "+p.name, err)
	case err != nil && !retryable(err):
		q.stats.Unexpected++
		q.note("consume on "+p.name, err)
	}
}

func (q *queueReader) failed(what string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stats.Unexpected++
	q.note(what, err)
}

func (q *queueReader) note(what string, err error) {
	if len(q.errors) < 10 {
		q.errors = append(q.errors, fmt.Sprintf("%s %s: %v", time.Now().Format(time.TimeOnly), what, err))
	}
}

// watcher follows every event through WatchOrders and checks that the
// sequences it gets have no gap and no repeat, resuming on any process
// from its last sequence + 1 whenever its stream ends.
type watcher struct {
	c      *cluster
	mu     sync.Mutex
	stats  WatchStats
	errors []string
}

func (w *watcher) run(ctx context.Context) {
	for ctx.Err() == nil {
		req := &ordersv1.WatchOrdersRequest{HeartbeatInterval: durationpb.New(streamHeartbeat)}
		if last := w.last(); last == 0 {
			req.Start = &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}
		} else {
			req.Start = &ordersv1.WatchOrdersRequest_StartSequence{StartSequence: last + 1}
		}
		p := w.c.randomReplica()
		err := readStream(ctx, w.c.stallAfter, func(ctx context.Context) (func() (any, error), error) {
			stream, err := p.client.WatchOrders(ctx, req)
			return func() (any, error) { return stream.Recv() }, err
		}, func(msg any) {
			if ev := msg.(*ordersv1.WatchOrdersResponse).GetEvent(); ev != nil {
				w.event(ev)
			}
		})
		w.ended(ctx, p, err)
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *watcher) last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats.LastSeq
}

func (w *watcher) event(ev *ordersv1.OrderEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Events++
	switch seq := ev.GetSequence(); {
	case seq <= w.stats.LastSeq:
		w.stats.Repeated++
		return
	case seq > w.stats.LastSeq+1:
		w.stats.Gaps++
	}
	w.stats.LastSeq = ev.GetSequence()
	w.stats.LongestLag = max(w.stats.LongestLag, time.Since(ev.GetPublishTime().AsTime()))
}

func (w *watcher) ended(ctx context.Context, p *process, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	w.stats.Reopened++
	if err == errStalled {
		w.stats.Stalls++
	} else if err != nil && !retryable(err) {
		w.stats.Unexpected++
	}
	if (err == errStalled || !retryable(err)) && len(w.errors) < 10 {
		w.errors = append(w.errors, fmt.Sprintf("%s watch on %s: %v", time.Now().Format(time.TimeOnly), p.name, err))
	}
}

// errStalled ends a stream that sent nothing, not even a heartbeat, for
// stallLimit.
var errStalled = status.Error(codes.Unknown, "stalled: nothing received, not even a heartbeat")

// readStream opens a server stream and hands each message to handle until
// the stream ends, ctx ends, or it is silent for stallAfter (stalls). It
// returns why it ended.
func readStream(ctx context.Context, stallAfter time.Duration, open func(context.Context) (func() (any, error), error), handle func(any)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := open(ctx)
	if err != nil {
		return err
	}
	stalled := false
	var mu sync.Mutex
	watchdog := time.AfterFunc(stallAfter, func() {
		mu.Lock()
		stalled = true
		mu.Unlock()
		cancel()
	})
	defer watchdog.Stop()
	for {
		msg, err := recv()
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			if stalled {
				return errStalled
			}
			return err
		}
		watchdog.Stop() // handling (acking) is the client's time, not the stream's
		handle(msg)
		watchdog.Reset(stallAfter)
	}
}
