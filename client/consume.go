package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Message is one event delivered to a Consume handler.
type Message struct {
	// Event is the order event to process.
	Event *ordersv1.OrderEvent
	// DeliveryAttempt counts the deliveries of this event, this one
	// included: above 1, an earlier handler failed or its client vanished.
	DeliveryAttempt uint64
	// NumPending is how many more events of the consumer wait to be delivered.
	NumPending uint64

	ackToken string
	received time.Time
}

// Handler processes one event of Consume. Returning nil acknowledges it;
// an error releases it for redelivery after a delay that grows with its
// delivery attempts (see ConsumeOptions.NakMinDelay); Terminate(reason)
// drops it for good. ctx ends when Consume has been stopping for longer
// than its DrainTimeout.
type Handler func(ctx context.Context, m *Message) error

// Consume receives the events of the durable consumer (created on first
// use) and runs handler for each, at most opts.MaxInFlight at once, until
// ctx ends; then it stops in order and returns nil. It returns early only
// with an error that another node would give too (bad options,
// permissions, a consumer with other settings).
//
// While a handler runs, its event's ack deadline is extended. Settled
// events are acked in batches, on any node. When the stream breaks (its
// node died or shut down, the connection was cut, or it went silent),
// Consume opens it again on a healthy node, with growing pauses; handlers
// already running go on, and their events are settled on the new node
// (nodes share the ack token key, --ack-token-key-file). Delivery is at
// least once: an event whose handler outlived MaxExtension, or whose
// settlement could not be sent, is delivered again, maybe elsewhere.
//
// On stop, Consume stops receiving (ordersd releases what it fetched but did
// not send), releases at once an event received but not started, waits for
// running handlers (cancelling their context after opts.DrainTimeout), and
// sends every settlement before it returns.
func (c *Client) Consume(ctx context.Context, consumer string, opts ConsumeOptions, handler Handler) error {
	if consumer == "" || handler == nil {
		return fmt.Errorf("%w: Consume needs a consumer name and a handler", ErrInvalidOption)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	s := &consumeSession{
		c: c, consumer: consumer, opts: opts, handler: handler, handlerCtx: handlerCtx,
		acks:   newAckBatcher(c.OrderServiceClient, opts.AckBatchDelay, c.log),
		slots:  make(chan struct{}, opts.MaxInFlight),
		leases: make(map[string]*Message),
	}
	extendCtx, stopExtending := context.WithCancel(context.Background())
	extenderDone := make(chan struct{})
	go func() { defer close(extenderDone); s.extend(extendCtx) }()

	err = c.reconnect(ctx, "consume", func() []any { return []any{"consumer", consumer} }, s.stream)

	drained := make(chan struct{})
	go func() { s.running.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(opts.DrainTimeout):
		cancelHandlers()
		<-drained
	}
	stopExtending()
	<-extenderDone
	s.acks.close()
	return err
}

// consumeSession is the state of one Consume call.
type consumeSession struct {
	c          *Client
	consumer   string
	opts       ConsumeOptions
	handler    Handler
	handlerCtx context.Context
	acks       *ackBatcher
	slots      chan struct{} // one per event held: the client's flow control
	running    sync.WaitGroup

	mu     sync.Mutex          // protects leases
	leases map[string]*Message // ack token → event held, not yet settled
}

// stream runs one ConsumeOrders stream until it ends.
func (s *consumeSession) stream(ctx context.Context, pause *backoff) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silence := silenceFactor * s.opts.Heartbeat
	dog := newWatchdog(silence, cancel)
	defer dog.stop()
	st, err := s.c.ConsumeOrders(sctx, &ordersv1.ConsumeOrdersRequest{
		Consumer:          s.consumer,
		Statuses:          s.opts.Statuses,
		MaxInFlight:       int32(s.opts.MaxInFlight),
		Settings:          s.opts.Settings,
		HeartbeatInterval: durationpb.New(s.opts.Heartbeat),
	})
	if err != nil {
		return streamError(sctx, err)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return streamError(sctx, err)
		}
		dog.kick(silence)
		pause.reset()
		if resp.GetHeartbeat() || resp.GetEvent() == nil {
			continue
		}
		m := &Message{Event: resp.GetEvent(), DeliveryAttempt: resp.GetDeliveryAttempt(), NumPending: resp.GetNumPending(), ackToken: resp.GetAckToken(), received: time.Now()}
		// Held from now on: its deadline is extended while it waits for a
		// slot (after a reconnect, handlers of the old stream still hold
		// theirs), and the stream's silence meanwhile is not a failure.
		s.hold(m)
		dog.stop()
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			// Stopping: release it for another client now rather than after its ack wait.
			s.settle(m, &ordersv1.Ack{AckToken: m.ackToken, Action: ordersv1.AckAction_ACK_ACTION_NAK})
			return nil
		}
		dog.kick(silence)
		s.start(m)
	}
}

// hold extends m's deadline until it is settled.
func (s *consumeSession) hold(m *Message) {
	s.mu.Lock()
	s.leases[m.ackToken] = m
	s.mu.Unlock()
}

// settle stops extending m's deadline and sends ack.
func (s *consumeSession) settle(m *Message, ack *ordersv1.Ack) {
	s.mu.Lock()
	delete(s.leases, m.ackToken)
	s.mu.Unlock()
	s.acks.add(ack)
}

// start runs the handler of m, which holds a slot.
func (s *consumeSession) start(m *Message) {
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		err := s.handler(s.handlerCtx, m)
		s.settle(m, s.settlement(m, err))
		<-s.slots
	}()
}

// settlement is the ack that the handler's result calls for.
func (s *consumeSession) settlement(m *Message, err error) *ordersv1.Ack {
	if err == nil {
		return &ordersv1.Ack{AckToken: m.ackToken, Action: ordersv1.AckAction_ACK_ACTION_ACK}
	}
	if reason, ok := terminalReason(err); ok {
		return &ordersv1.Ack{AckToken: m.ackToken, Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: termReason(reason)}
	}
	return &ordersv1.Ack{AckToken: m.ackToken, Action: ordersv1.AckAction_ACK_ACTION_NAK, NakDelay: durationpb.New(s.opts.nakDelay(m.DeliveryAttempt))}
}

// extend keeps the ack deadline of every held event from passing, until
// MaxExtension, every ExtendEvery, until ctx ends.
func (s *consumeSession) extend(ctx context.Context) {
	tick := time.NewTicker(s.opts.ExtendEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, token := range s.extensible(now) {
				s.acks.add(&ordersv1.Ack{AckToken: token, Action: ordersv1.AckAction_ACK_ACTION_IN_PROGRESS})
			}
		}
	}
}

// extensible returns the tokens of held events that have not reached
// MaxExtension.
func (s *consumeSession) extensible(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tokens []string
	for token, m := range s.leases {
		if now.Sub(m.received) < s.opts.MaxExtension {
			tokens = append(tokens, token)
		}
	}
	return tokens
}

// maxTermReason is ordersd's bound on a TERM reason, in characters.
const maxTermReason = 512

// termReason makes reason acceptable to ordersd: no control characters,
// 512 characters at most.
func termReason(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, reason)
	if r := []rune(reason); len(r) > maxTermReason {
		reason = string(r[:maxTermReason])
	}
	return reason
}
