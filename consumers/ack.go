package consumers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
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

// body is the JetStream ack protocol message of s.
func (s Settle) body() []byte {
	switch s.Action {
	case ActionNak:
		if s.NakDelay > 0 {
			return fmt.Appendf(nil, `-NAK {"delay": %d}`, s.NakDelay.Nanoseconds())
		}
		return []byte("-NAK")
	case ActionInProgress:
		return []byte("+WPI")
	case ActionTerm:
		if s.Reason != "" {
			return []byte("+TERM " + s.Reason)
		}
		return []byte("+TERM")
	default:
		return []byte("+ACK")
	}
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
func (a *Acker) Apply(ctx context.Context, settles []Settle) []SettleResult {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	results := make([]SettleResult, len(settles))
	inbox := a.nc.NewInbox()
	replies := make(chan *nats.Msg, len(settles))
	sub, err := a.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return failAll(results, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, s := range settles {
		msg := &nats.Msg{Subject: s.Ack.Subject, Reply: inbox + "." + strconv.Itoa(i), Data: s.body()}
		if err := a.nc.PublishMsg(msg); err != nil {
			results[i].Err = err
		}
	}
	if err := a.nc.FlushWithContext(ctx); err != nil {
		return failAll(results, err)
	}
	for waiting := awaiting(results); waiting > 0; {
		select {
		case m := <-replies:
			i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
			if err != nil || i < 0 || i >= len(results) || results[i].Confirmed {
				continue
			}
			results[i].Confirmed = true
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

// awaiting is how many acks were published and wait for their answer.
func awaiting(results []SettleResult) int {
	n := 0
	for _, r := range results {
		if r.Err == nil {
			n++
		}
	}
	return n
}

func failAll(results []SettleResult, err error) []SettleResult {
	for i := range results {
		results[i].Err = err
	}
	return results
}
