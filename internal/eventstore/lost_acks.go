package eventstore

import (
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lostAcks gives back the asynchronous publisher's slots that acks which
// never come would hold forever (a stream leader that died mid-write
// answers nothing; nats.go frees pending acks only on a reconnect), without
// a timer per publish: nats.go's WithPublishAsyncTimeout starts one for
// every publish, and its timer heap shows in a create's CPU profile. Only
// publishes whose callers stopped
// waiting (their context ended) can be lost; they are noted here and
// checked when another one is abandoned or a publish finds the publisher
// full. When one has gone unanswered for longer than the store's timeout,
// the publisher is reset (CleanupPublisher): every pending publish fails
// with ErrJetStreamPublisherClosed (UNAVAILABLE, retryable with the same
// request id, as for the timeout it replaces) and all slots are free.
type lostAcks struct {
	js    jetstream.JetStream
	after time.Duration // an abandoned publish unanswered this long is lost

	mu      sync.Mutex
	waiting []abandonedPublish
}

// abandonedPublish is a publish whose caller stopped waiting for its ack.
type abandonedPublish struct {
	future jetstream.PubAckFuture
	since  time.Time
}

// abandon notes a publish whose caller stopped waiting, and checks the
// publishes noted before.
func (l *lostAcks) abandon(f jetstream.PubAckFuture) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting = append(l.waiting, abandonedPublish{future: f, since: time.Now()})
	l.checkLocked()
}

// publishFailed checks the abandoned publishes when a publish failed
// because too many wait for their acks.
func (l *lostAcks) publishFailed(err error) {
	if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkLocked()
}

// checkLocked forgets the abandoned publishes that got their answer and
// resets the publisher if one is lost; l.mu is held.
func (l *lostAcks) checkLocked() {
	lost := false
	kept := l.waiting[:0]
	for _, p := range l.waiting {
		if answered(p.future) {
			continue
		}
		lost = lost || time.Since(p.since) >= l.after
		kept = append(kept, p)
	}
	clear(l.waiting[len(kept):])
	l.waiting = kept
	if lost {
		l.js.CleanupPublisher()
		clear(l.waiting)
		l.waiting = l.waiting[:0]
	}
}

// answered reports whether JetStream has answered the publish (nobody
// else waits for the answer any more).
func answered(f jetstream.PubAckFuture) bool {
	select {
	case <-f.Ok():
		return true
	case <-f.Err():
		return true
	default:
		return false
	}
}
