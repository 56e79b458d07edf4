package consumers

import (
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// liveEvent is one event of the live fan-out, shared by every watcher it
// matches. Its WatchOrdersResponse is encoded once, by the first watcher
// that sends it, and the same bytes go to every other watcher: with many
// watchers of every event, encoding each copy separately would be the
// node's bound.
type liveEvent struct {
	event   *ordersv1.OrderEvent
	skipped *eventstore.UnreadableError // instead of event: a message that is not an order event
	monitor *Monitor                    // counts the encodes
	part    int                         // number of the partition it was stored in (0 in layout 2)
	tick    uint64                      // the monitor's count of messages fanned out, this one included
	// after is, in layout 3, the sequence of the last message fanned out
	// of every partition once this one was (its own included): the
	// position after it of a watcher that follows the fan-out.
	after []uint64

	once     sync.Once
	epoch    []eventstore.Epoch // of the streams in position
	position string             // the resume position after the event
	response []byte             // its WatchOrdersResponse, with position
	err      error
}

// sequence is the stream sequence of the event or skipped message.
func (e *liveEvent) sequence() uint64 {
	if e.skipped != nil {
		return e.skipped.Sequence
	}
	return e.event.GetSequence()
}

// encoded returns the event's WatchOrdersResponse in the wire format, and
// its resume position, in the streams of epochs (one per partition). The
// position is the same for every watcher that follows the fan-out (the
// event's sequence; in layout 3 the fan-out's sequences after it), so
// both are made once and shared: nobody may change the bytes. (Every
// watcher of a node names the same epochs but while a stream is being
// re-created; one that names others gets bytes of its own.)
func (e *liveEvent) encoded(p *ResumePositions, epochs []eventstore.Epoch) ([]byte, string, error) {
	e.once.Do(func() {
		e.epoch = epochs
		e.response, e.position, e.err = e.encode(p, epochs)
		e.monitor.responsesEncoded.Add(1)
	})
	if !slices.Equal(epochs, e.epoch) {
		return e.encode(p, epochs)
	}
	return e.response, e.position, e.err
}

// positions is where a watcher that follows the fan-out stands after
// the event, in the streams of epochs.
func (e *liveEvent) positions(epochs []eventstore.Epoch) []Position {
	if e.after == nil {
		return []Position{{Epoch: epochs[0], Sequence: e.sequence()}}
	}
	pos := make([]Position, len(epochs))
	for k := range pos {
		pos[k] = Position{Epoch: epochs[k], Sequence: e.after[k]}
	}
	return pos
}

func (e *liveEvent) encode(p *ResumePositions, epochs []eventstore.Epoch) ([]byte, string, error) {
	position := p.SealIn(e.monitor.layout, e.positions(epochs))
	res := &ordersv1.WatchOrdersResponse{Event: e.event, ResumePosition: position}
	if e.skipped != nil {
		res.Skipped = e.skipped.Proto()
	}
	b, err := proto.Marshal(res)
	return b, position, err
}
