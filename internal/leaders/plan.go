package leaders

import (
	"cmp"
	"slices"
)

// Stream is where the copies of one stream are, from its stream info.
type Stream struct {
	Name     string
	Replicas int    // copies the stream keeps
	Leader   string // the server that leads it; empty while it elects one
	// Followers are the servers holding the other copies.
	Followers []Follower
}

// Follower is a server holding a copy of a stream that it does not lead.
type Follower struct {
	Name string
	// Current is true when the server is online and caught up with the
	// leader: only then can it take over the leadership at once.
	Current bool
}

// Move asks the leadership of Stream to pass from one server to another.
type Move struct {
	Stream, From, To string
}

// Plan returns the fewest leader moves that spread the leaders of streams
// over the servers that can lead them, each stream moved at most once:
// a move goes from a server leading at least two more streams than a
// current follower of the same stream to that follower, the most uneven
// pair first. Streams with one replica, or with no leader at the moment,
// are left as they are. Plan is deterministic: the same placement gives
// the same moves, whichever node computes it.
func Plan(streams []Stream) []Move {
	streams = slices.Clone(streams)
	slices.SortFunc(streams, func(a, b Stream) int { return cmp.Compare(a.Name, b.Name) })
	led := map[string]int{}
	for _, s := range streams {
		if movable(s) {
			led[s.Leader]++
		}
	}
	moved := make([]bool, len(streams))
	var moves []Move
	for {
		best, to, gap := -1, "", 1
		for i, s := range streams {
			if moved[i] || !movable(s) {
				continue
			}
			for _, f := range s.Followers {
				if !f.Current {
					continue
				}
				g := led[s.Leader] - led[f.Name]
				if g > gap || (g == gap && best == i && f.Name < to) {
					best, to, gap = i, f.Name, g
				}
			}
		}
		if best < 0 {
			return moves
		}
		s := streams[best]
		led[s.Leader]--
		led[to]++
		moved[best] = true
		moves = append(moves, Move{Stream: s.Name, From: s.Leader, To: to})
	}
}

// movable reports whether a stream has a leader that could hand over to
// another copy.
func movable(s Stream) bool {
	return s.Replicas > 1 && s.Leader != ""
}
