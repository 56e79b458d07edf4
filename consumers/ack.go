package consumers

import (
	"context"
	"fmt"
	"sync"
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

// Apply sends every ack at once and waits for their confirmations.
func (a *Acker) Apply(ctx context.Context, settles []Settle) []SettleResult {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	results := make([]SettleResult, len(settles))
	var wg sync.WaitGroup
	for i, s := range settles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.nc.RequestWithContext(ctx, s.Ack.Subject, s.body())
			results[i] = SettleResult{Confirmed: err == nil, Err: err}
		}()
	}
	wg.Wait()
	return results
}
