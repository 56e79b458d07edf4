package leaders

import (
	"cmp"
	"maps"
	"slices"
)

// Stream is where the copies of one stream are, from its stream info.
type Stream struct {
	Name string
	// Group is the group of streams the stream is spread with (see Plan).
	Group    int
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
// over the servers that can lead them, group by group in the order of
// their numbers: the first group is spread on its own (the partitions of
// the orders: one leader per server whatever the other streams do), and
// each later group evens out the totals given the leaders of the groups
// before it. Each stream is moved at most once: a move goes from a server
// leading at least two more streams than a current follower of the same
// stream to that follower, the most uneven pair first. Streams with one
// replica, or with no leader at the moment, are left as they are. Plan is
// deterministic: the same placement gives the same moves, whichever node
// computes it.
func Plan(streams []Stream) []Move {
	groups := map[int][]Stream{}
	for _, s := range streams {
		groups[s.Group] = append(groups[s.Group], s)
	}
	earlier := map[string]int{} // leaders of the groups planned so far
	var moves []Move
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		moves = append(moves, planGroup(groups[g], earlier)...)
	}
	return moves
}

// planGroup is Plan of one group of streams, counting the leaders in led
// besides the group's own; it adds the group's leaders, once moved, to
// led.
func planGroup(streams []Stream, led map[string]int) []Move {
	streams = slices.Clone(streams)
	slices.SortFunc(streams, func(a, b Stream) int { return cmp.Compare(a.Name, b.Name) })
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
