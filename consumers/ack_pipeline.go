package consumers

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// AckPipeline applies the acks of one StreamOrders stream with
// confirmation, as Acker does, but over one reply subscription for the
// whole stream and without waiting: acks go out as they come, and each
// confirmation (or failure) is handed to done when it arrives, so many
// acks are in flight at once and no call pays for a subscription and a
// flush.
type AckPipeline struct {
	nc      *nats.Conn
	timeout time.Duration
	inbox   string
	sub     *nats.Subscription
	done    func(tag any, r SettleResult)
	stop    chan struct{}
	stopped sync.WaitGroup

	mu      sync.Mutex
	next    uint64
	pending map[uint64]pendingAck
}

// pendingAck is an ack sent and not yet answered.
type pendingAck struct {
	tag     any
	expires time.Time
}

// Pipeline starts an AckPipeline that tells done the result of each ack
// (done runs on NATS's and the pipeline's goroutines, never under a lock
// of the pipeline). Close it when the stream ends.
func (a *Acker) Pipeline(done func(tag any, r SettleResult)) (*AckPipeline, error) {
	p := &AckPipeline{nc: a.nc, timeout: a.timeout, inbox: a.nc.NewInbox(), done: done,
		stop: make(chan struct{}), pending: make(map[uint64]pendingAck)}
	sub, err := a.nc.Subscribe(p.inbox+".*", p.answered)
	if err != nil {
		return nil, err
	}
	p.sub = sub
	p.stopped.Add(1)
	go p.expire()
	return p, nil
}

// Send publishes one ack; its result goes to done with tag.
func (p *AckPipeline) Send(s Settle, tag any) {
	if !p.nc.IsConnected() {
		p.done(tag, SettleResult{Err: fmt.Errorf("%w: not connected to NATS", eventstore.ErrUnavailable)})
		return
	}
	p.mu.Lock()
	p.next++
	id := p.next
	p.pending[id] = pendingAck{tag: tag, expires: time.Now().Add(p.timeout)}
	p.mu.Unlock()
	msg := &nats.Msg{Subject: s.Ack.Subject, Reply: p.inbox + "." + strconv.FormatUint(id, 10), Data: s.body()}
	if err := p.nc.PublishMsg(msg); err != nil {
		if t, ok := p.take(id); ok {
			p.done(t, SettleResult{Err: err})
		}
	}
}

// answered takes JetStream's answer to an ack.
func (p *AckPipeline) answered(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(p.inbox)+1:], 10, 64)
	if err != nil {
		return
	}
	tag, ok := p.take(id)
	if !ok {
		return // expired already
	}
	if noResponders(m) {
		p.done(tag, SettleResult{Err: ErrAckNotApplied})
		return
	}
	p.done(tag, SettleResult{Confirmed: true})
}

func (p *AckPipeline) take(id uint64) (any, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.pending[id]
	if ok {
		delete(p.pending, id)
	}
	return a.tag, ok
}

// expire fails the acks JetStream did not answer within the timeout.
func (p *AckPipeline) expire() {
	defer p.stopped.Done()
	tick := time.NewTicker(min(p.timeout/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			p.failPending(func(a pendingAck) bool { return now.After(a.expires) }, errAckTimeout)
		}
	}
}

var errAckTimeout = fmt.Errorf("no confirmation of the ack in time")

func (p *AckPipeline) failPending(which func(pendingAck) bool, err error) {
	var failed []any
	p.mu.Lock()
	for id, a := range p.pending {
		if which(a) {
			delete(p.pending, id)
			failed = append(failed, a.tag)
		}
	}
	p.mu.Unlock()
	for _, tag := range failed {
		p.done(tag, SettleResult{Err: err})
	}
}

// Pending is how many acks wait for their answer.
func (p *AckPipeline) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Close waits until every ack sent is answered or has timed out, then
// stops the pipeline.
func (p *AckPipeline) Close() {
	deadline := time.Now().Add(p.timeout)
	for p.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(p.stop)
	p.stopped.Wait()
	_ = p.sub.Unsubscribe()
	p.failPending(func(pendingAck) bool { return true }, errAckTimeout)
}
