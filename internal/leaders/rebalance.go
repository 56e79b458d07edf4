package leaders

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is how often Rebalance reads the placement while it waits
// for the leaders it moved.
const pollInterval = 250 * time.Millisecond

// maxMoveRounds bounds the plans Rebalance asks for: a preferred server
// can lose the election that its stepdown starts, and then the next plan
// moves the leader on.
const maxMoveRounds = 3

// Report is what Rebalance found, asked for and left.
type Report struct {
	Before []Stream // the placement it found
	Moves  []Move   // the moves it asked for, in every round
	After  []Stream // the placement it left
}

// Rebalance spreads the leaders once, now, whatever Options.Moves says:
// it reads the placement, asks for the moves of its Plan, waits until
// every moved stream has a new leader, and plans again until nothing is
// left to move (at most maxMoveRounds plans) or ctx ends. It is the
// operator's command; Run does the same on its own, one plan per check.
func (r *Rebalancer) Rebalance(ctx context.Context) (Report, error) {
	var rep Report
	streams, err := r.Placement(ctx)
	if err != nil {
		return rep, err
	}
	rep.Before, rep.After = streams, streams
	for round := 0; ; round++ {
		if allLed(streams) && Balanced(streams) {
			return rep, nil
		}
		if round == maxMoveRounds {
			return rep, fmt.Errorf("leaders still uneven after %d rounds of moves", maxMoveRounds)
		}
		moves, err := r.Move(ctx, streams)
		rep.Moves = append(rep.Moves, moves...)
		if err != nil {
			return rep, err
		}
		if streams, err = r.awaitMoved(ctx, moves); err != nil {
			return rep, err
		}
		rep.After = streams
	}
}

// awaitMoved reads the placement until every stream has a leader and
// none of moves still has the leader it moved from.
func (r *Rebalancer) awaitMoved(ctx context.Context, moves []Move) ([]Stream, error) {
	for {
		streams, err := r.Placement(ctx)
		if err == nil && allLed(streams) && !stillOn(streams, moves) {
			return streams, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return streams, fmt.Errorf("waiting for the moved leaders: %w", err)
		case <-time.After(pollInterval):
		}
	}
}

// allLed reports whether every stream has a leader.
func allLed(streams []Stream) bool {
	for _, s := range streams {
		if s.Leader == "" {
			return false
		}
	}
	return true
}

// stillOn reports whether a stream of moves is still led by the server
// it was moved from.
func stillOn(streams []Stream, moves []Move) bool {
	from := map[string]string{}
	for _, m := range moves {
		from[m.Stream] = m.From
	}
	for _, s := range streams {
		if f, ok := from[s.Name]; ok && s.Leader == f {
			return true
		}
	}
	return false
}
