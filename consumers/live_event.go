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
	response []byte
	err      error
}

// sequence is the stream sequence of the event or skipped message.
func (e *liveEvent) sequence() uint64 {
	if e.skipped != nil {
		return e.skipped.Sequence
	}
	return e.event.GetSequence()
}

// encoded returns the event's WatchOrdersResponse in the wire format.
// The bytes are shared: nobody may change them.
func (e *liveEvent) encoded() ([]byte, error) {
	e.once.Do(func() {
		res := &ordersv1.WatchOrdersResponse{Event: e.event}
		if e.skipped != nil {
			res.Skipped = e.skipped.Proto()
		}
		e.response, e.err = proto.Marshal(res)
		e.monitor.responsesEncoded.Add(1)
	})
	return e.response, e.err
}
