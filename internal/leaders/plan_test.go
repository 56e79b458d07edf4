package leaders

import (
	"fmt"
	"slices"
	"testing"
)

// replicated is a stream of three copies on n1, n2 and n3, led by leader
// ("" for none), every follower current but those named in behind.
func replicated(name, leader string, behind ...string) Stream {
	s := Stream{Name: name, Replicas: 3, Leader: leader}
	for _, server := range []string{"n1", "n2", "n3"} {
		if server != leader {
			s.Followers = append(s.Followers, Follower{Name: server, Current: !slices.Contains(behind, server)})
		}
	}
	return s
}

// leadersPerServer counts the streams each server leads once moves are done.
func leadersPerServer(streams []Stream, moves []Move) map[string]int {
	leader := map[string]string{}
	for _, s := range streams {
		leader[s.Name] = s.Leader
	}
	for _, m := range moves {
		if _, ok := leader[m.Stream]; ok {
			leader[m.Stream] = m.To
		}
	}
	counts := map[string]int{}
	for _, l := range leader {
		if l != "" {
			counts[l]++
		}
	}
	return counts
}

func TestPlanSpreadsLeadersWithFewestMoves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		streams []Stream
		want    []Move
	}{{
		name:    "three streams led by one server move two of them, one to each other server",
		streams: []Stream{replicated("A", "n1"), replicated("B", "n1"), replicated("C", "n1")},
		want:    []Move{{"A", "n1", "n2"}, {"B", "n1", "n3"}},
	}, {
		name:    "three streams already on three servers stay",
		streams: []Stream{replicated("A", "n2"), replicated("B", "n3"), replicated("C", "n1")},
	}, {
		name:    "four streams on two servers after a node returned: one moves to it",
		streams: []Stream{replicated("A", "n1"), replicated("B", "n2"), replicated("C", "n1"), replicated("D", "n2")},
		want:    []Move{{"A", "n1", "n3"}},
	}, {
		name:    "four streams two, one and one stay: an even spread of four over three cannot be better",
		streams: []Stream{replicated("A", "n1"), replicated("B", "n1"), replicated("C", "n2"), replicated("D", "n3")},
	}, {
		name:    "a returned server that has not caught up yet gets nothing",
		streams: []Stream{replicated("A", "n1", "n3"), replicated("B", "n2", "n3"), replicated("C", "n1", "n3"), replicated("D", "n2", "n3")},
	}, {
		name:    "a server caught up on one stream only gets that one",
		streams: []Stream{replicated("A", "n1", "n3"), replicated("B", "n1"), replicated("C", "n1", "n3")},
		want:    []Move{{"A", "n1", "n2"}, {"B", "n1", "n3"}},
	}, {
		name:    "a stream electing its leader is left alone and not counted",
		streams: []Stream{replicated("A", ""), replicated("B", "n1"), replicated("C", "n2")},
	}, {
		name: "streams of one replica are not spread",
		streams: []Stream{
			{Name: "A", Replicas: 1, Leader: "n1"}, {Name: "B", Replicas: 1, Leader: "n1"}, {Name: "C", Replicas: 1, Leader: "n1"},
		},
	}, {
		name:    "the order of the input does not change the moves",
		streams: []Stream{replicated("C", "n1"), replicated("B", "n1"), replicated("A", "n1")},
		want:    []Move{{"A", "n1", "n2"}, {"B", "n1", "n3"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Plan(tc.streams); !slices.Equal(got, tc.want) {
				t.Errorf("Plan = %v, want %v", got, tc.want)
			}
		})
	}
}

// Whatever the starting placement of up to eight streams over three
// servers with every copy current, one plan leaves no server leading two
// more streams than another, with at most one move per stream, and a
// second plan finds nothing left to move.
func TestPlanEvensOutEveryPlacement(t *testing.T) {
	t.Parallel()
	servers := []string{"n1", "n2", "n3"}
	for n := 1; n <= 8; n++ {
		combinations := 1
		for range n {
			combinations *= len(servers)
		}
		for c := range combinations {
			var streams []Stream
			for i, code := 0, c; i < n; i, code = i+1, code/len(servers) {
				streams = append(streams, replicated(fmt.Sprintf("S%d", i), servers[code%len(servers)]))
			}
			moves := Plan(streams)
			counts := leadersPerServer(streams, moves)
			lo, hi := n, 0
			for _, s := range servers {
				lo, hi = min(lo, counts[s]), max(hi, counts[s])
			}
			if hi-lo > 1 {
				t.Fatalf("%d streams %v: after %v the servers lead %v", n, streams, moves, counts)
			}
			seen := map[string]bool{}
			for _, m := range moves {
				if seen[m.Stream] {
					t.Fatalf("%d streams %v: %s moved twice in %v", n, streams, m.Stream, moves)
				}
				seen[m.Stream] = true
			}
			after := make([]Stream, len(streams))
			for i, s := range streams {
				leader := s.Leader
				for _, m := range moves {
					if m.Stream == s.Name {
						leader = m.To
					}
				}
				after[i] = replicated(s.Name, leader)
			}
			if again := Plan(after); len(again) != 0 {
				t.Fatalf("%d streams %v: after %v a second plan moves %v", n, streams, moves, again)
			}
		}
	}
}

// The first group is spread on its own: three partitions go one per
// server even when the totals of all five streams are already even (a
// plan of all five together would leave two partitions on n1).
func TestPlanSpreadsEachGroupOnItsOwn(t *testing.T) {
	t.Parallel()
	inGroup := func(s Stream, g int) Stream { s.Group = g; return s }
	streams := []Stream{
		inGroup(replicated("ORDERS_0", "n1"), 0), inGroup(replicated("ORDERS_1", "n1"), 0), inGroup(replicated("ORDERS_2", "n3"), 0),
		inGroup(replicated("ORDERS_DEAD_LETTERS", "n2"), 1), inGroup(replicated("ORDERS_REDRIVE", "n2"), 1),
	}
	moves := Plan(streams)
	counts := leadersPerServer(streams[:3], moves)
	if counts["n1"] != 1 || counts["n2"] != 1 || counts["n3"] != 1 {
		t.Fatalf("partitions after %v: %v, want one per server", moves, counts)
	}
	if all := leadersPerServer(streams, moves); max(all["n1"], all["n2"], all["n3"])-min(all["n1"], all["n2"], all["n3"]) > 1 {
		t.Errorf("all streams after %v: %v", moves, all)
	}
}

// A later group evens out the totals given the earlier groups' leaders:
// the one partition of layout 2 and its id claims on n1 are two leaders
// there while n3 leads none, so the claims move.
func TestPlanEvensTheTotalsWithLaterGroups(t *testing.T) {
	t.Parallel()
	inGroup := func(s Stream, g int) Stream { s.Group = g; return s }
	streams := []Stream{
		inGroup(replicated("ORDERS", "n1"), 0),
		inGroup(replicated("ORDER_IDS", "n1"), 1), inGroup(replicated("ORDERS_DEAD_LETTERS", "n2"), 1),
	}
	moves := Plan(streams)
	if counts := leadersPerServer(streams, moves); counts["n1"] != 1 || counts["n2"] != 1 || counts["n3"] != 1 {
		t.Fatalf("after %v: %v, want one per server", moves, counts)
	}
}
