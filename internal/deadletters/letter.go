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
	Redriven   bool // given up on a redriven delivery
	// Partition is the partition whose stream holds the event (the zero
	// Partition in layout 2), and EventSeq its sequence there; 0 when
	// unknown (its redrive marker is gone, or it is in a stream of
	// another layout).
	Partition eventstore.Partition
	EventSeq  uint64
	// Event is the event as stored; nil when it cannot be read (not an
	// order event, or EventSeq unknown).
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
	layout := d.s.events.Layout()
	if letter.Redriven {
		letter.EventSeq = 0
		marker, err := d.red.GetMsg(ctx, a.StreamSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return letter, nil // the consumer was deleted with its markers
		case err != nil:
			return Letter{}, err
		}
		p, seq, err := ParseRedriveMarker(marker.Data)
		if err != nil || p.Of != layout.Partitions {
			return letter, nil // not a marker, or of another layout
		}
		letter.Partition, letter.EventSeq = p, seq
	} else {
		p, ok := layout.PartitionOfStream(a.Stream)
		if !ok {
			letter.EventSeq = 0 // a consumer of another layout's stream
			return letter, nil
		}
		letter.Partition = p
	}
	ev, err := d.s.events.EventAt(ctx, letter.Partition, letter.EventSeq)
	if err != nil && !errors.Is(err, eventstore.ErrNotFound) && !errors.Is(err, eventstore.ErrCorruptEvent) {
		return Letter{}, err
	}
	letter.Event = ev
	return letter, nil
}
