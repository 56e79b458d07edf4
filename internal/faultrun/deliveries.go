package faultrun

import (
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// deliveryInboxes are the subjects JetStream sends a pull consumer's
// messages to: the reply subject of each pull request, a connection's
// inbox (nats.go's jetstream Fetch uses conn.NewInbox(), under the default
// prefix, and so does ordersd).
const deliveryInboxes = nats.InboxPrefix + ">"

// sendKey names one delivery JetStream made: the event's stream sequence
// and the delivery count it went out with.
type sendKey struct{ seq, attempt uint64 }

// SendLog records when each delivery of one consumer went out, as seen by
// the run's own NATS connections, one per clustered node (so the server
// that sends a delivery always has a local subscriber, whatever routes are
// cut): a copy of every message JetStream sends to a pull request's inbox,
// stamped when it arrives, before the ordersd process it is for has handed
// it on. It is what tells a redelivery JetStream made before an ack
// reached it from one made after.
type SendLog struct {
	ackPrefix string // "$JS.ACK.<stream>.<consumer>.": the reply subject of the consumer's deliveries
	mu        sync.Mutex
	at        map[sendKey][]time.Time // each time a delivery was seen (the same send on several connections, or a resend with the same count)
}

// NewSendLog logs the deliveries of consumer on stream, once Observe has
// subscribed connections.
func NewSendLog(stream, consumer string) *SendLog {
	return &SendLog{ackPrefix: "$JS.ACK." + stream + "." + consumer + ".", at: map[sendKey][]time.Time{}}
}

// Observe subscribes conn to every inbox; the subscription lives as long
// as conn.
func (l *SendLog) Observe(conn *nats.Conn) error {
	sub, err := conn.Subscribe(deliveryInboxes, func(m *nats.Msg) {
		now := time.Now()
		if !strings.HasPrefix(m.Reply, l.ackPrefix) {
			return // another consumer's delivery, or an API reply
		}
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		l.record(sendKey{meta.Sequence.Stream, meta.NumDelivered}, now)
	})
	if err != nil {
		return err
	}
	// A dropped message would be a send the log never saw.
	return sub.SetPendingLimits(-1, -1)
}

func (l *SendLog) record(k sendKey, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[k] = append(l.at[k], at)
}

// SentBefore reports whether the delivery of the event at stream sequence
// seq with delivery count attempt was seen going out before t.
func (l *SendLog) SentBefore(seq, attempt uint64, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.at[sendKey{seq, attempt}] {
		if at.Before(t) {
			return true
		}
	}
	return false
}

// firstSentAfter is when delivery k was first seen going out after t, if
// it was.
func (l *SendLog) firstSentAfter(k sendKey, t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, at := range l.at[k] {
		if !at.Before(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}
