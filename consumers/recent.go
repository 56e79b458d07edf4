package consumers

import (
	"fmt"
	"sort"
)

// RecentCapacity is how many of the last events fanned out the monitor
// keeps for watchers that fell behind: about 4 s at 2,000 events/s. Its
// memory is that of as many decoded events and their encoded responses,
// whatever the number of watchers and however far they lag. A watcher
// further behind than that is ended with a TooSlowError.
const RecentCapacity = 8192

// recentEvents is a ring of the last events the monitor fanned out (and
// of its notices of skipped messages, so lagging watchers get them too). A
// watcher whose live buffer overflowed catches up from it instead of
// reading the stream on its own: the events in it were read from JetStream,
// decoded and (once any watcher sent them) encoded once for every watcher,
// so lagging watchers cost the node what live ones do, and a steady
// overload cannot turn into a growing one. It is etcd's unsynced watcher
// group with the shared read done already, by the fan-out. The monitor's
// mutex protects it.
type recentEvents struct {
	ring  []*liveEvent // in the order fanned out (by tick) from start, wrapping around
	start int          // index of the oldest event held
	// floor is the monitor's tick after which every message fanned out is
	// held. Ticks, not sequences, order the ring: in layout 3 the events
	// come from several streams, interleaved as they arrive.
	floor uint64
	// epoch changes each time the ring starts again (the monitor
	// subscribed anew): the positions of a previous epoch are not in it.
	epoch uint64
}

// restart empties the ring: it holds the events after floor from now on.
func (r *recentEvents) restart(floor uint64) {
	clear(r.ring)
	r.ring, r.start, r.floor = r.ring[:0], 0, floor
	r.epoch++
}

// add appends the event fanned out after every one the ring holds,
// dropping the oldest when the ring is full.
func (r *recentEvents) add(e *liveEvent) {
	if len(r.ring) < RecentCapacity {
		r.ring = append(r.ring, e)
		return
	}
	r.floor = r.ring[r.start].tick
	r.ring[r.start] = e
	r.start = (r.start + 1) % len(r.ring)
}

// at is the i-th oldest event held.
func (r *recentEvents) at(i int) *liveEvent {
	return r.ring[(r.start+i)%len(r.ring)]
}

// after appends to into the events held after the monitor's tick, oldest
// first, as many as into has room for. It reports false when events
// after tick have already left the ring.
func (r *recentEvents) after(tick uint64, into []*liveEvent) ([]*liveEvent, bool) {
	if tick < r.floor {
		return into, false
	}
	i := sort.Search(len(r.ring), func(i int) bool { return r.at(i).tick > tick })
	for ; i < len(r.ring) && len(into) < cap(into); i++ {
		into = append(into, r.at(i))
	}
	return into, true
}

// held is how many events the ring holds.
func (r *recentEvents) held() int { return len(r.ring) }

// TooSlowError ends a watch whose reader fell further behind the live
// events than the monitor keeps (RecentCapacity events). Such a watcher
// is neither waited for (that would slow every other one) nor read for
// from the stream on its own while it follows the live events (that is
// what made a steady overload grow): it is told, and resumes after
// ResumePosition (or from Resume) without a gap or a repeat.
type TooSlowError struct {
	Resume         uint64 // the start_sequence that resumes the watch; 0 in layout 3, where there is none
	ResumePosition string // the resume position that resumes the watch
}

func (e *TooSlowError) Error() string {
	if e.Resume == 0 {
		return fmt.Sprintf("watcher fell more than %d events behind the live events; resume with resume_after = %q",
			RecentCapacity, e.ResumePosition)
	}
	return fmt.Sprintf("watcher fell more than %d events behind the live events; resume with resume_after = %q (or start_sequence = %d)",
		RecentCapacity, e.ResumePosition, e.Resume)
}
