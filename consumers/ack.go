package consumers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// AckAction is what an ack does to a delivery.
type AckAction int

// The ack actions, with the JetStream ack bodies they send.
const (
	ActionAck        AckAction = iota + 1 // +ACK
	ActionNak                             // -NAK, with an optional delay
	ActionInProgress                      // +WPI: restart the ack wait
	ActionTerm                            // +TERM: never redeliver
)

// Settle is one verified ack to apply.
type Settle struct {
	Ack      AckSubject
	Action   AckAction
	NakDelay time.Duration
	Reason   string
}

// SettleResult says whether JetStream confirmed a Settle.
type SettleResult struct {
	Confirmed bool
	Err       error
}

// The bodies of the JetStream ack protocol: what an ack message carries
// to the ack subject of a delivery. A NAK may be followed by a delay, a
// TERM by a reason. (nats.go has the same bodies, but does not export
// them.)
const (
	ackBody        = "+ACK"
	nakBody        = "-NAK"
	inProgressBody = "+WPI"
	termBody       = "+TERM"
)

// body is the JetStream ack protocol message of s.
func (s Settle) body() []byte {
	switch s.Action {
	case ActionNak:
		if s.NakDelay > 0 {
			return fmt.Appendf(nil, `%s {"delay": %d}`, nakBody, s.NakDelay.Nanoseconds())
		}
		return []byte(nakBody)
	case ActionInProgress:
		return []byte(inProgressBody)
	case ActionTerm:
		if s.Reason != "" {
			return []byte(termBody + " " + s.Reason)
		}
		return []byte(termBody)
	default:
		return []byte(ackBody)
	}
}

// actionOf is the action of an ack message's body, from any sender: the
// reverse of body. An empty body is an ack, as JetStream takes it; a body
// that is no ack action (+NXT, say) gives false.
func actionOf(body []byte) (AckAction, bool) {
	switch {
	case len(body) == 0, bytes.HasPrefix(body, []byte(ackBody)):
		return ActionAck, true
	case bytes.HasPrefix(body, []byte(nakBody)):
		return ActionNak, true
	case bytes.HasPrefix(body, []byte(inProgressBody)):
		return ActionInProgress, true
	case bytes.HasPrefix(body, []byte(termBody)):
		return ActionTerm, true
	}
	return 0, false
}

// Acker applies acks with confirmation (JetStream's "double ack": the ack
// is a request, and JetStream answers once it has processed it).
type Acker struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewAcker returns an Acker that waits at most timeout for each confirmation.
func NewAcker(nc *nats.Conn, timeout time.Duration) *Acker {
	return &Acker{nc: nc, timeout: timeout}
}

// Apply sends every ack at once and waits for their confirmations. The
// acks share one reply subscription (ack i is answered on <inbox>.<i>), so
// a batch costs one subscription, not one request each.
//
// Several acks of one event with the same action (tokens of two of its
// deliveries) go out once and share the answer: a replicated consumer
// keeps one pending reply per event, so it would answer only one of them.
// Apply stops waiting a little before the caller's deadline, so the caller
// still learns which acks were confirmed.
func (a *Acker) Apply(ctx context.Context, settles []Settle) []SettleResult {
	ctx, cancel := context.WithDeadline(ctx, a.waitUntil(ctx))
	defer cancel()
	repeats := repeatsOf(settles)
	results := a.apply(ctx, settles, repeats)
	for i, first := range repeats {
		results[i] = results[first]
	}
	return results
}

// apply publishes every settle but the repeats and waits for the answers.
func (a *Acker) apply(ctx context.Context, settles []Settle, repeats map[int]int) []SettleResult {
	results := make([]SettleResult, len(settles))
	if !a.nc.IsConnected() {
		// Published now, the acks would wait in the reconnect buffer, and
		// their confirmations could not come before the timeout.
		return failAll(results, fmt.Errorf("%w: not connected to NATS", eventstore.ErrUnavailable))
	}
	inbox := a.nc.NewInbox()
	replies := make(chan *nats.Msg, len(settles))
	sub, err := a.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return failAll(results, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	waiting := 0
	for i, s := range settles {
		if _, repeat := repeats[i]; repeat {
			continue
		}
		msg := &nats.Msg{Subject: s.Ack.Subject, Reply: inbox + "." + strconv.Itoa(i), Data: s.body()}
		if err := a.nc.PublishMsg(msg); err != nil {
			results[i].Err = err
			continue
		}
		waiting++
	}
	if err := a.nc.FlushWithContext(ctx); err != nil {
		return failAll(results, err)
	}
	for waiting > 0 {
		select {
		case m := <-replies:
			i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
			if err != nil || i < 0 || i >= len(results) || results[i].Confirmed || results[i].Err != nil {
				continue
			}
			if noResponders(m) {
				results[i].Err = ErrAckNotApplied
			} else {
				results[i].Confirmed = true
			}
			waiting--
		case <-ctx.Done():
			for i := range results {
				if !results[i].Confirmed && results[i].Err == nil {
					results[i].Err = ctx.Err()
				}
			}
			return results
		}
	}
	return results
}

// waitUntil is when Apply stops waiting for confirmations: after the
// Acker's timeout, or shortly before ctx's deadline, whichever is first.
func (a *Acker) waitUntil(ctx context.Context) time.Time {
	until := time.Now().Add(a.timeout)
	if deadline, ok := ctx.Deadline(); ok {
		margin := min(200*time.Millisecond, time.Until(deadline)/10)
		if d := deadline.Add(-margin); d.Before(until) {
			until = d
		}
	}
	return until
}

// settleKey identifies what an ack settles: one action on one event (or
// redrive marker) of one consumer, whichever delivery's token names it.
type settleKey struct {
	stream    string
	consumer  string
	streamSeq uint64
	action    AckAction
}

// repeatsOf maps the index of every settle whose key an earlier settle
// has to the index of that earlier one.
func repeatsOf(settles []Settle) map[int]int {
	var repeats map[int]int
	seen := make(map[settleKey]int, len(settles))
	for i, s := range settles {
		key := settleKey{s.Ack.Stream, s.Ack.Consumer, s.Ack.StreamSeq, s.Action}
		first, dup := seen[key]
		if !dup {
			seen[key] = i
			continue
		}
		if repeats == nil {
			repeats = map[int]int{}
		}
		repeats[i] = first
	}
	return repeats
}

// ErrAckNotApplied is a settle's error when nothing took its ack: the
// consumer it names no longer exists (deleted, or expired while idle).
var ErrAckNotApplied = errors.New("no consumer took the ack: it was deleted or expired")

// noResponders reports whether m is the status NATS itself sends back to a
// request that no subscriber received, rather than JetStream's answer.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

func failAll(results []SettleResult, err error) []SettleResult {
	for i := range results {
		results[i].Err = err
	}
	return results
}
