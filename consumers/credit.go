package consumers

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordersd/ordersd/internal/deadletters"
)

// credit tracks what one ConsumeOrders client holds unacknowledged, so the
// fetch loop asks JetStream for no more than the client can take. A
// delivery stops counting when it is acked, nak'ed or terminated (on any
// ordersd node: credit watches the ack subjects on NATS), or when its ack
// wait has passed and JetStream redelivers it anyway.
//
// In layout 3 one client's fetch loops (one per partition) share its
// credit: each reserves what it fetches before the fetch, so together
// they never ask for more than the client can take.
type credit struct {
	limit   int
	changed func(delta int) // told how the number held moves (metrics)
	forgot  func(heldKey)   // told of each delivery no longer held; may be nil

	mu       sync.Mutex            // protects due, reserved, freedCh
	due      map[heldKey]time.Time // delivery → when JetStream redelivers it
	reserved int                   // asked for by fetches not yet delivered
	freedCh  chan struct{}         // closed (and replaced) when credit is freed
}

// heldKey names one held delivery: an event of ORDERS (or of a
// partition's ORDERS_<k>), or a redrive marker of ORDERS_REDRIVE, by its
// stream and its sequence there.
type heldKey struct {
	stream string
	seq    uint64
}

// heldKeyOf is the key of the delivery an ack subject acks.
func heldKeyOf(ack AckSubject) heldKey {
	return heldKey{stream: ack.Stream, seq: ack.StreamSeq}
}

func newCredit(limit int, changed func(delta int)) *credit {
	return &credit{limit: limit, freedCh: make(chan struct{}), changed: changed, due: make(map[heldKey]time.Time)}
}

// free is how many more deliveries the client can take now, and the time
// the earliest held delivery expires (zero when none is held).
func (c *credit) free(now time.Time) (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	expired := 0
	for seq, due := range c.due {
		if !due.After(now) {
			delete(c.due, seq)
			expired++
			if c.forgot != nil {
				c.forgot(seq)
			}
		} else if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	c.changed(-expired)
	return c.limit - len(c.due) - c.reserved, next
}

// reserve is free, at most most of it, reserved for one fetch until
// unreserve: another fetch loop of the client does not count it. Each
// loop reserving at most its share keeps one that fetches (and waits for
// events) from taking the credit the others would deliver with.
func (c *credit) reserve(now time.Time, most int) (int, time.Time) {
	n, next := c.free(now)
	n = min(n, most)
	if n > 0 {
		c.mu.Lock()
		c.reserved += n
		c.mu.Unlock()
	}
	return n, next
}

// unreserve gives back a reservation once its fetch is delivered (what
// was sent of it is held by then).
func (c *credit) unreserve(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	c.reserved -= n
	c.mu.Unlock()
	c.signal()
}

// freed is closed when credit is freed after the call.
func (c *credit) freed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.freedCh
}

// hold counts a delivery until due.
func (c *credit) hold(seq heldKey, due time.Time) {
	c.mu.Lock()
	_, held := c.due[seq]
	c.due[seq] = due
	c.mu.Unlock()
	if !held {
		c.changed(1)
	}
}

// drop forgets every held delivery, when the stream ends: JetStream
// redelivers them after their ack wait.
func (c *credit) drop() {
	c.mu.Lock()
	n := len(c.due)
	clear(c.due)
	c.mu.Unlock()
	c.changed(-n)
}

// release stops counting a delivery.
func (c *credit) release(seq heldKey) {
	c.mu.Lock()
	_, held := c.due[seq]
	delete(c.due, seq)
	c.mu.Unlock()
	if held && c.forgot != nil {
		c.forgot(seq)
	}
	if held {
		c.changed(-1)
		c.signal()
	}
}

// extend moves a held delivery's expiry (an in-progress ack).
func (c *credit) extend(seq heldKey, due time.Time) {
	c.mu.Lock()
	if _, held := c.due[seq]; held {
		c.due[seq] = due
	}
	c.mu.Unlock()
}

// signal wakes every fetch loop waiting for credit.
func (c *credit) signal() {
	c.mu.Lock()
	close(c.freedCh)
	c.freedCh = make(chan struct{})
	c.mu.Unlock()
}

// watchAcks subscribes to the acks of consumer on streams (and on
// ORDERS_REDRIVE), wherever they come from, and settles credit with them.
// wait is how long an in-progress ack extends a delivery.
func (c *credit) watchAcks(nc *nats.Conn, streams []string, consumer string, wait time.Duration) ([]*nats.Subscription, error) {
	handle := func(m *nats.Msg) {
		ack, ok := ParseAckSubject(m.Subject)
		if !ok {
			return
		}
		action, ok := actionOf(m.Data)
		switch {
		case !ok:
		case action == ActionInProgress:
			c.extend(heldKeyOf(ack), time.Now().Add(wait))
		default:
			c.release(heldKeyOf(ack))
		}
	}
	var subs []*nats.Subscription
	var patterns []string
	for _, stream := range append(streams, deadletters.RedriveStream) {
		patterns = append(patterns,
			"$JS.ACK."+stream+"."+consumer+".>",     // without a JetStream domain
			"$JS.ACK.*.*."+stream+"."+consumer+".>", // with one
		)
	}
	for _, pattern := range patterns {
		sub, err := nc.Subscribe(pattern, handle)
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, nil
}
