package consumers

import (
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

	once     sync.Once
	epoch    eventstore.Epoch // of the stream in position
	position string           // the resume position after the event
	response []byte           // its WatchOrdersResponse, with position
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
// its resume position, in the stream of epoch. The position is the same
// for every watcher the event reaches (it is the event's sequence), so
// both are made once and shared: nobody may change the bytes. (Every
// watcher of a node names the same epoch but while the stream is being
// re-created; one that names another gets bytes of its own.)
func (e *liveEvent) encoded(p *ResumePositions, epoch eventstore.Epoch) ([]byte, string, error) {
	e.once.Do(func() {
		e.epoch = epoch
		e.response, e.position, e.err = e.encode(p, epoch)
		e.monitor.responsesEncoded.Add(1)
	})
	if epoch != e.epoch {
		return e.encode(p, epoch)
	}
	return e.response, e.position, e.err
}

func (e *liveEvent) encode(p *ResumePositions, epoch eventstore.Epoch) ([]byte, string, error) {
	position := p.Seal(Position{Epoch: epoch, Sequence: e.sequence()})
	res := &ordersv1.WatchOrdersResponse{Event: e.event, ResumePosition: position}
	if e.skipped != nil {
		res.Skipped = e.skipped.Proto()
	}
	b, err := proto.Marshal(res)
	return b, position, err
}
