package consumers

import (
	"context"
	"sync"
	"time"
)

// Session is one StreamOrders stream: a ConsumeOrders fetch loop whose
// deliveries are numbered, sent in batches, and settled on the stream by
// their number. Credit comes back as soon as the client's ack arrives,
// without waiting to see the ack on NATS; acks by token (on any node)
// still return it, through the ack subjects credit watches.
type Session struct {
	w    *WorkQueues
	spec ConsumeSpec

	ready chan struct{} // closed once the fetch loop has set up credit
	held  *credit
	wait  time.Duration // how long an in-progress ack extends a delivery

	mu     sync.Mutex
	byID   map[uint64]tracked // deliveries held, by Delivery.ID
	idOf   map[heldKey]uint64 // the same, by what they deliver
	lastID uint64             // the highest Delivery.ID given
}

// tracked is a delivery of a Session that is not settled yet.
type tracked struct {
	key   heldKey
	reply string // its JetStream ack subject
}

// NewSession returns the Session of one StreamOrders stream; Run serves it.
func (w *WorkQueues) NewSession(spec ConsumeSpec) *Session {
	spec.Raw = true
	return &Session{w: w, spec: spec, ready: make(chan struct{}),
		byID: make(map[uint64]tracked), idOf: make(map[heldKey]uint64)}
}

// Run binds to (or creates) the consumer and sends its deliveries in
// batches to sendBatch (heartbeats to send) until ctx ends or a send
// fails, as WorkQueues.Consume does.
func (s *Session) Run(ctx context.Context, send func(Delivery) error, sendBatch func([]Delivery) error) error {
	return s.w.consume(ctx, s.spec, s, send, func(batch []Delivery) (int, error) {
		if err := sendBatch(batch); err != nil {
			return 0, err
		}
		return len(batch), nil
	})
}

// Consumer is the name of the session's durable consumer.
func (s *Session) Consumer() string { return s.spec.Consumer }

// start is called by the fetch loop once its credit exists.
func (s *Session) start(held *credit, wait time.Duration) {
	held.forgot = s.forget
	s.held, s.wait = held, wait
	close(s.ready)
}

// track notes a delivery about to be sent.
func (s *Session) track(id uint64, key heldKey, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.idOf[key]; ok { // redelivered to this stream: the old id is stale
		delete(s.byID, old)
	}
	s.byID[id] = tracked{key: key, reply: reply}
	s.idOf[key] = id
	s.lastID = id
}

// forget drops a delivery that is no longer held (settled, or its ack wait
// passed).
func (s *Session) forget(key heldKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.idOf[key]; ok {
		delete(s.idOf, key)
		delete(s.byID, id)
	}
}

// Lookup returns the ack subject of the delivery id of this stream. known
// is false for an id the stream never gave; held is false for one given
// but already settled, or whose ack wait has passed.
func (s *Session) Lookup(id uint64) (ack AckSubject, known, held bool) {
	s.mu.Lock()
	t, ok := s.byID[id]
	known = id > 0 && id <= s.lastID
	s.mu.Unlock()
	if !ok {
		return AckSubject{}, known, false
	}
	// Built from what the stream knows, not parsed: the reply subject is
	// one JetStream gave this stream's fetches.
	return AckSubject{Subject: t.reply, Stream: t.key.stream, Consumer: s.spec.Consumer, StreamSeq: t.key.seq}, known, true
}

// Settled returns credit for acks the client sent on this stream, before
// they reach JetStream: the client is done with those deliveries. An
// in-progress ack extends the delivery instead.
func (s *Session) Settled(settles []Settle) {
	select {
	case <-s.ready:
	default:
		return // nothing was delivered yet
	}
	now := time.Now()
	for _, st := range settles {
		if st.Ack.Consumer != s.spec.Consumer {
			continue // a token of another consumer: not this stream's credit
		}
		key := heldKeyOf(st.Ack)
		if st.Action == ActionInProgress {
			s.held.extend(key, now.Add(s.wait))
		} else {
			s.held.release(key)
		}
	}
}
