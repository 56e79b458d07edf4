package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// Reason is why a consumer gave up on an event.
type Reason int

// The reasons, from the advisory's kind.
const (
	MaxDeliveries Reason = iota + 1 // MAX_DELIVERIES
	Terminated                      // MSG_TERMINATED: a +TERM, with its reason
)

// Letter is one event one consumer gave up on.
type Letter struct {
	ID         uint64 // its sequence in ORDERS_DEAD_LETTERS
	Consumer   string
	Reason     Reason
	TermReason string
	Deliveries uint64
	Time       time.Time
	Redriven   bool   // given up on a redriven delivery
	EventSeq   uint64 // the event's ORDERS sequence; 0 when unknown
	// Event is the event as stored in ORDERS; nil when it cannot be read
	// (not an order event, or its redrive marker is gone).
	Event *ordersv1.OrderEvent
}

// advisory is what the dead-letter advisories carry (nats-server's
// JSConsumerDeliveryExceededAdvisory and JSConsumerDeliveryTerminatedAdvisory).
type advisory struct {
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// read decodes a stored advisory and finds its event.
func (d *opened) read(ctx context.Context, raw *jetstream.RawStreamMsg) (Letter, error) {
	var a advisory
	if err := json.Unmarshal(raw.Data, &a); err != nil {
		return Letter{}, fmt.Errorf("%w: dead letter %d: %v", eventstore.ErrCorruptEvent, raw.Sequence, err)
	}
	letter := Letter{ID: raw.Sequence, Consumer: a.Consumer, Deliveries: a.Deliveries, Time: a.Time,
		TermReason: a.Reason, Redriven: a.Stream == RedriveStream, EventSeq: a.StreamSeq, Reason: MaxDeliveries}
	if strings.HasPrefix(raw.Subject, advisoryPrefix+advisoryTerminated+".") {
		letter.Reason = Terminated
	}
	if letter.Redriven {
		letter.EventSeq = 0
		marker, err := d.red.GetMsg(ctx, a.StreamSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return letter, nil // the consumer was deleted with its markers
		case err != nil:
			return Letter{}, err
		}
		if letter.EventSeq, err = ParseRedriveMarker(marker.Data); err != nil {
			return letter, nil
		}
	}
	ev, err := d.s.events.EventAt(ctx, eventstore.Partition{}, letter.EventSeq)
	if err != nil && !errors.Is(err, eventstore.ErrNotFound) && !errors.Is(err, eventstore.ErrCorruptEvent) {
		return Letter{}, err
	}
	letter.Event = ev
	return letter, nil
}
