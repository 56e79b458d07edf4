package consumers

import (
	"context"
	"sync"
	"time"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// mergeBuffer is how many read messages of one partition wait for the
// merge: enough that the reads of the partitions go on while the watcher
// sends, little enough that a replay holds few events per partition.
const mergeBuffer = 64

// mergeItem is one message a partition's read handed to the merge.
type mergeItem struct {
	event   *ordersv1.OrderEvent
	skipped *eventstore.UnreadableError
	stored  time.Time // when it was stored; a skipped message takes its partition's previous time
}

// mergeSource is the read of one partition, as the merge sees it.
type mergeSource struct {
	part  eventstore.Partition
	items chan mergeItem // closed when the read ends, after last and err are set
	last  uint64         // the sequence of the last message read
	err   error
	head  *mergeItem // the next item to merge; nil when none is taken yet
	ended bool
}

// catchUpMerged is a replay of layout 3: it reads every partition's
// stream from where the watcher is until each has caught up, at once, and
// sends their events merged in one defined order, by stored time, ties
// by partition number (the order of ListOrders). Each partition's events
// keep their stream's order, and the watcher's position advances per
// partition, so a resume after any of them misses and repeats nothing.
func (s *watchStream) catchUpMerged(ctx context.Context, parts []eventstore.Partition) error {
	readCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	sources := make([]*mergeSource, len(parts))
	for i, part := range parts {
		req, err := s.readRequest(part) // before any read: the merge moves the position on
		if err != nil {
			return err
		}
		src := &mergeSource{part: part, items: make(chan mergeItem, mergeBuffer)}
		sources[i] = src
		var previous time.Time
		hand := func(it mergeItem) error {
			if it.stored.IsZero() {
				it.stored = previous
			}
			previous = it.stored
			select {
			case src.items <- it:
				return nil
			case <-readCtx.Done():
				return readCtx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(src.items)
			// Only the merge, which sends, moves the position on; the read
			// hands on what it read.
			req.Skipped = func(u *eventstore.UnreadableError) error {
				if !s.spec.matchesUnreadable(part, u) {
					return nil
				}
				return hand(mergeItem{skipped: u})
			}
			src.last, src.err = s.w.store.Read(readCtx, req, func(ev *ordersv1.OrderEvent) error {
				if !s.spec.matches(ev) {
					return nil
				}
				return hand(mergeItem{event: ev, stored: ev.GetPublishTime().AsTime()})
			})
		}()
	}
	s.atTail = false
	for {
		next, err := s.nextMerged(ctx, sources)
		if err != nil || next == nil {
			return err
		}
		it := next.head
		next.head = nil
		if it.skipped != nil {
			s.advance(next.part.Number, it.skipped.Sequence)
			err = s.emit(WatchUpdate{Skipped: it.skipped})
		} else {
			err = s.event(next.part, it.event)
		}
		if err != nil {
			return err
		}
	}
}

// nextMerged takes the head of every source still reading and returns the
// one to send next (nil when every read ended), or the first read's error.
func (s *watchStream) nextMerged(ctx context.Context, sources []*mergeSource) (*mergeSource, error) {
	var next *mergeSource
	for _, src := range sources {
		for src.head == nil && !src.ended {
			select {
			case it, ok := <-src.items:
				if !ok {
					src.ended = true
					if src.err != nil {
						return nil, src.err
					}
					// Every message it read is sent: the watcher has been
					// served its partition up to the last one read.
					s.advance(src.part.Number, src.last)
					break
				}
				src.head = &it
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if src.head == nil {
			continue
		}
		if next == nil || src.head.stored.Before(next.head.stored) ||
			(src.head.stored.Equal(next.head.stored) && src.part.Number < next.part.Number) {
			next = src
		}
	}
	return next, nil
}
