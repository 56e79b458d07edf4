package eventstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Bounds of one page of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
	// ListScanBudget is the most candidate events one page examines. A
	// listing by status across all customers may have to pass over many
	// orders that moved on; a page that reaches the budget ends early,
	// with fewer orders and a cursor to go on from.
	ListScanBudget = 2000
	// listReadParallelism is how many order reads of one page run at once.
	listReadParallelism = 16
)

// ListRequest is the input of List.
type ListRequest struct {
	// CustomerID lists one customer's orders; every customer's when empty.
	CustomerID string
	// Statuses lists only orders whose current status is one of these;
	// every order when empty.
	Statuses []ordersv1.OrderStatus
	// After is the cursor of the previous page (ListPage.Next); nil for the
	// first page.
	After Cursor
	// PageSize is the most orders of the page, 1 to MaxPageSize.
	PageSize int
}

// Cursor is where a listing goes on from: for each partition, by number,
// the stream sequence of the last position the listing visited there.
type Cursor []uint64

// after is the cursor's sequence in partition k (0 before the first).
func (c Cursor) after(k int) uint64 {
	if k < len(c) {
		return c[k]
	}
	return 0
}

// ListPage is one page of List.
type ListPage struct {
	Orders []*ordersv1.Order
	// Unreadable are the orders of the page that could not be listed: each
	// one's last message is not an order event (another publisher's, or
	// corrupt). They take no place among Orders; the rest of the page is
	// listed as if they were not there.
	Unreadable []*UnreadableError
	// Next is the cursor of the next page; nil when there is none.
	Next Cursor
}

// List returns a page of orders as they are at the moment of the call:
// every read goes to the stream leader, so a page reflects every write
// acknowledged before the call, on any node.
//
// A listing visits each order at one position, which never moves: the
// stream sequence of the order's first event in one of the requested
// statuses (without statuses, of its created event). It visits positions
// in stream order, each page going on after the last position the one
// before visited (the cursor), and lists an order if its current status
// is one of the requested ones when it is visited. So no order is listed
// twice, however orders are created and move between pages; an order that
// is in the requested statuses for the whole listing is listed exactly
// once; one that first enters them during the listing gets a position
// ahead of the cursor and is listed if it is still in them when the
// listing gets there. An order is left out only if it was outside the
// requested statuses when its position was visited (it had moved out of
// them, and may have come back since).
//
// The cursor is a stream sequence. Orders spread over several streams
// keep this design with one cursor per stream: each stream's positions
// are visited in its own order, and no order has positions in two.
//
// Candidate positions come from subject filters, so JetStream selects
// them: the events that put orders in the requested statuses
// (ORDERS.<status>.<customer>.*), or their created events. Only an
// order's own events are positions: a message that is not one (another
// publisher's, or corrupt) or a repair (Repair's copy of an earlier event)
// never is, so neither adds a position nor moves one. An order whose last
// message is not an order event is reported in ListPage.Unreadable at its
// position instead of being listed. For one customer the work grows with
// that customer's events; across all customers a page examines at most
// ListScanBudget candidates.
func (s *Store) List(ctx context.Context, req ListRequest) (ListPage, error) {
	if req.PageSize < 1 || req.PageSize > MaxPageSize {
		return ListPage{}, fmt.Errorf("%w: page size must be 1 to %d, got %d", ErrInvalidArgument, MaxPageSize, req.PageSize)
	}
	if len(req.After) > 0 && len(req.After) != len(s.layout.All()) {
		return ListPage{}, fmt.Errorf("%w: the cursor has %d partitions, this deployment %d", ErrInvalidArgument, len(req.After), len(s.layout.All()))
	}
	q := newListQuery(req.Statuses)
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return ListPage{}, err
	}
	defer cancel()
	scans := make([]*scan, len(st.parts))
	for k, part := range st.parts {
		filters, err := part.FilterSubjects(Filter{Statuses: q.positions, CustomerID: req.CustomerID})
		if err != nil {
			return ListPage{}, err
		}
		scans[k] = newScan(part, filters, req.After.after(k))
	}
	if req.CustomerID != "" {
		return s.listOfCustomer(ctx, scans, req, q)
	}
	m := mergedScan(scans)
	var page ListPage
	for examined := 0; ; {
		if examined == ListScanBudget {
			page.Next = m.cursor() // more may follow: go on from here
			return page, nil
		}
		batch, err := m.next(ctx, min(readAhead(req.PageSize-len(page.Orders)), ListScanBudget-examined))
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		if len(batch) == 0 {
			return page, nil // the end of every partition
		}
		examined += len(batch)
		// An event of the scan is an order's position only if none of the
		// order's earlier events is in the requested statuses: visit checks.
		candidates := s.positions(batch)
		found, broken, err := s.visit(ctx, candidates, q, true)
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		if full := page.add(found, broken, req.PageSize); full >= 0 {
			// A next page exists if any candidate follows the one that
			// filled this page.
			more := full < len(candidates)-1
			if !more {
				if more, err = m.peek(ctx); err != nil {
					return ListPage{}, s.classify(err)
				}
			}
			if more {
				page.Next = visitedUpTo(req.After, len(scans), candidates[:full+1])
			}
			return page, nil
		}
	}
}

// visitedUpTo is the cursor after visiting visited, going on from after.
// Candidates read past the one that filled a page are visited again by
// the next page.
func visitedUpTo(after Cursor, partitions int, visited []position) Cursor {
	next := make(Cursor, partitions)
	copy(next, after)
	for _, p := range visited {
		next[p.part.Number] = p.seq
	}
	return next
}

// readAhead is how many candidates to visit at once when a page still has
// room for more orders: at least one round of parallel reads, so that a
// sparse listing does not read one candidate at a time. Candidates past
// the one that fills the page are visited again by the next page.
func readAhead(room int) int {
	return max(room, listReadParallelism)
}

// add appends what visit found at a page's candidates, in order: the
// orders listed (found), and those that are unreadable (broken, each
// once), until the page holds size orders. It returns the index of the
// candidate that filled the page, or -1 if it is not full.
func (p *ListPage) add(found []*ordersv1.Order, broken []*UnreadableError, size int) int {
	for i, o := range found {
		switch {
		case o != nil:
			p.Orders = append(p.Orders, o)
			if len(p.Orders) == size {
				return i
			}
		case broken[i] != nil && !slices.ContainsFunc(p.Unreadable, func(u *UnreadableError) bool { return u.Sequence == broken[i].Sequence }):
			p.Unreadable = append(p.Unreadable, broken[i])
		}
	}
	return -1
}

// listQuery is what a listing asks for, as List reads it.
type listQuery struct {
	// positions are the statuses whose events are candidate positions:
	// the requested ones (each once), or CREATED for every order.
	positions []ordersv1.OrderStatus
	// wanted holds the requested statuses; nil: every order is listed.
	wanted map[ordersv1.OrderStatus]bool
}

func newListQuery(statuses []ordersv1.OrderStatus) listQuery {
	if len(statuses) == 0 {
		return listQuery{positions: []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED}}
	}
	q := listQuery{wanted: map[ordersv1.OrderStatus]bool{}}
	for _, st := range statuses {
		if !q.wanted[st] {
			q.wanted[st] = true
			q.positions = append(q.positions, st)
		}
	}
	return q
}

// lists reports whether an order in status belongs on a page.
func (q listQuery) lists(status ordersv1.OrderStatus) bool {
	return q.wanted == nil || q.wanted[status]
}

// position is a candidate position of a listing: an event of an order.
type position struct {
	part   partitionStreams
	seq    uint64
	time   time.Time            // when the event was stored
	status ordersv1.OrderStatus // the event's type
	key    OrderKey
}

// positions turns scanned messages into candidate positions, in the same
// order, leaving out those that are not an order's own event (see
// isOrderEvent).
func (s *Store) positions(msgs []scanned) []position {
	out := make([]position, 0, len(msgs))
	for _, m := range msgs {
		msg := m.msg
		status, key, ok := m.part.parseSubject(msg.Subject)
		if !ok {
			s.unreadable.Note(m.part.unreadable(msg.Subject, msg.Sequence, "the subject is not %s", m.part.subjectForm()))
			continue
		}
		if m.part.isOrderEvent(msg) {
			out = append(out, position{part: m.part, seq: msg.Sequence, time: msg.Time, status: status, key: key})
		}
	}
	return out
}

// listOfCustomer is List for one customer. Its candidates come from each
// partition's per-subject index rather than a scan: the subjects on the
// scans' filters (one per order and status, for this customer only) and
// the last message of each, so the work grows with the customer's orders
// and not with the streams. (Reading the next message on a filter makes
// JetStream scan the stream's blocks from the start position, and a read
// that finds none scans to the end, at a cost that grows with the
// stream.) As every event of the customer in the requested statuses is at
// hand, an order's position is the earliest of its own. The partitions'
// candidates, each in its stream's order, are merged as the scans of
// List merge them.
func (s *Store) listOfCustomer(ctx context.Context, scans []*scan, req ListRequest, q listQuery) (ListPage, error) {
	perPartition := make([][]position, len(scans))
	for k, sc := range scans {
		candidates, err := s.customerCandidates(ctx, sc)
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		perPartition[k] = candidates
	}
	candidates := mergePositions(perPartition)
	var page ListPage
	var visited []position
	for len(candidates) > 0 {
		batch := candidates[:min(readAhead(req.PageSize-len(page.Orders)), len(candidates))]
		candidates = candidates[len(batch):]
		found, broken, err := s.visit(ctx, batch, q, false)
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		if full := page.add(found, broken, req.PageSize); full >= 0 {
			if full < len(batch)-1 || len(candidates) > 0 {
				page.Next = visitedUpTo(req.After, len(scans), append(visited, batch[:full+1]...))
			}
			return page, nil
		}
		visited = append(visited, batch...)
	}
	return page, nil
}

// customerCandidates are the positions after the scan's cursor of the
// orders on its filters (one customer's), in stream order.
func (s *Store) customerCandidates(ctx context.Context, sc *scan) ([]position, error) {
	var subjects []string
	for _, f := range sc.filters {
		info, err := sc.part.events.Info(ctx, jetstream.WithSubjectFilter(f))
		if err != nil {
			return nil, err
		}
		for subject := range info.State.Subjects {
			subjects = append(subjects, subject)
		}
	}
	events := make([]scanned, len(subjects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listReadParallelism)
	for i, subject := range subjects {
		g.Go(func() error {
			msg, err := sc.part.eventOn(gctx, subject)
			events[i] = scanned{part: sc.part, msg: msg}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	first := map[OrderKey]position{}
	for _, p := range s.positions(slices.DeleteFunc(events, func(m scanned) bool { return m.msg == nil })) {
		if f, ok := first[p.key]; !ok || p.seq < f.seq {
			first[p.key] = p
		}
	}
	var candidates []position
	for _, p := range first {
		if p.seq > sc.cursor {
			candidates = append(candidates, p)
		}
	}
	slices.SortFunc(candidates, func(a, b position) int { return cmp.Compare(a.seq, b.seq) })
	return candidates, nil
}

// mergePositions merges the partitions' positions, each list in its
// stream's order, in the order mergedScan takes messages.
func mergePositions(perPartition [][]position) []position {
	var out []position
	for {
		best := -1
		for k, ps := range perPartition {
			if len(ps) > 0 && (best < 0 || ps[0].time.Before(perPartition[best][0].time)) {
				best = k
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, perPartition[best][0])
		perPartition[best] = perPartition[best][1:]
	}
}

// scanned is a message a scan read, with the partition it is in.
type scanned struct {
	part partitionStreams
	msg  *jetstream.RawStreamMsg
}

// scan walks one partition's messages on a set of subject filters in
// stream order, one message read at a time from the stream leader ("next
// message on this subject from sequence n"), so it sees every
// acknowledged write.
type scan struct {
	part    partitionStreams
	filters []string
	heads   []*jetstream.RawStreamMsg // the next message of each filter; nil: not read yet
	ended   []bool
	cursor  uint64 // the sequence of the last message returned
}

// newScan is a scan of part on filters (every event of the partition when
// none), after sequence cursor.
func newScan(part partitionStreams, filters []string, cursor uint64) *scan {
	if len(filters) == 0 {
		filters = []string{part.Subjects()}
	}
	return &scan{part: part, filters: filters, heads: make([]*jetstream.RawStreamMsg, len(filters)), ended: make([]bool, len(filters)), cursor: cursor}
}

// next returns up to n messages after the cursor, in stream order.
func (sc *scan) next(ctx context.Context, n int) ([]*jetstream.RawStreamMsg, error) {
	var batch []*jetstream.RawStreamMsg
	for len(batch) < n {
		head, err := sc.head(ctx)
		if err != nil {
			return nil, err
		}
		if head == nil {
			break
		}
		batch = append(batch, sc.pop())
	}
	return batch, nil
}

// head returns the next message after the cursor without taking it; nil
// when every filter has ended.
func (sc *scan) head(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	i, err := sc.first(ctx)
	if err != nil || i < 0 {
		return nil, err
	}
	return sc.heads[i], nil
}

// pop takes the message head returned.
func (sc *scan) pop() *jetstream.RawStreamMsg {
	best := -1
	for i, h := range sc.heads {
		if h != nil && (best < 0 || h.Sequence < sc.heads[best].Sequence) {
			best = i
		}
	}
	msg := sc.heads[best]
	sc.cursor = msg.Sequence
	sc.heads[best] = nil
	return msg
}

// first reads the next message of every filter that has none at hand and
// returns the index of the earliest, or -1 when every filter has ended.
func (sc *scan) first(ctx context.Context) (int, error) {
	best := -1
	for i, filter := range sc.filters {
		if sc.heads[i] == nil && !sc.ended[i] {
			msg, err := sc.part.events.GetMsg(ctx, sc.cursor+1, jetstream.WithGetMsgSubject(filter))
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
				sc.ended[i] = true
			case err != nil:
				return -1, err
			default:
				sc.heads[i] = msg
			}
		}
		if sc.heads[i] != nil && (best < 0 || sc.heads[i].Sequence < sc.heads[best].Sequence) {
			best = i
		}
	}
	return best, nil
}

// mergedScan walks the scans of every partition as one: each partition's
// messages in its stream's order, and among the partitions, the one whose
// next message was stored first (the lower partition number on a tie).
// That is the one defined order of a listing across partitions; whatever
// the clocks of the partitions' leaders, each partition is still visited
// in its own order from its own cursor, so nothing is skipped or visited
// twice.
type mergedScan []*scan

// next returns up to n messages after the cursor, in merged order.
func (m mergedScan) next(ctx context.Context, n int) ([]scanned, error) {
	var batch []scanned
	for len(batch) < n {
		k, err := m.first(ctx)
		if err != nil {
			return nil, err
		}
		if k < 0 {
			break
		}
		batch = append(batch, scanned{part: m[k].part, msg: m[k].pop()})
	}
	return batch, nil
}

// first returns the number of the partition whose message comes next, or
// -1 when every scan has ended.
func (m mergedScan) first(ctx context.Context) (int, error) {
	best, bestHead := -1, (*jetstream.RawStreamMsg)(nil)
	for k, sc := range m {
		head, err := sc.head(ctx)
		if err != nil {
			return -1, err
		}
		if head != nil && (best < 0 || head.Time.Before(bestHead.Time)) {
			best, bestHead = k, head
		}
	}
	return best, nil
}

// peek reports whether any message follows the cursor.
func (m mergedScan) peek(ctx context.Context) (bool, error) {
	k, err := m.first(ctx)
	return k >= 0, err
}

// cursor is where the scans are.
func (m mergedScan) cursor() Cursor {
	c := make(Cursor, len(m))
	for k, sc := range m {
		c[k] = sc.cursor
	}
	return c
}

// visit reads the current state of each candidate's order, in parallel,
// and returns, for each candidate, the order listed there or nil: an order
// is listed if q lists its current status and, with checkFirst, if the
// candidate is its position (no earlier event of it is in q's statuses).
// An order whose last message is not an order event is returned in broken
// instead, where the candidate is its position.
func (s *Store) visit(ctx context.Context, candidates []position, q listQuery, checkFirst bool) (found []*ordersv1.Order, broken []*UnreadableError, err error) {
	found = make([]*ordersv1.Order, len(candidates))
	broken = make([]*UnreadableError, len(candidates))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(listReadParallelism)
	for i, p := range candidates {
		g.Go(func() error {
			last, err := s.lastEvent(ctx, p.part, p.key)
			bad := AsUnreadable(err)
			switch {
			case errors.Is(err, ErrNotFound):
				return nil // a claim without events: no order yet
			case bad == nil && err != nil:
				return err
			case bad == nil && !q.lists(last.event.GetOrder().GetStatus()):
				return nil
			}
			if checkFirst {
				if first, err := p.part.isPosition(ctx, p, q); err != nil || !first {
					return err
				}
			}
			if bad != nil {
				broken[i] = bad
			} else {
				found[i] = last.event.GetOrder()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return found, broken, nil
}

// isPosition reports whether candidate is its order's first event in q's
// statuses. Only statuses that may come before the candidate's need a
// look, each at the one subject of that event of that order (the
// per-subject index, not a scan).
func (part partitionStreams) isPosition(ctx context.Context, candidate position, q listQuery) (bool, error) {
	for _, st := range q.positions {
		if st == candidate.status || !mayPrecede(st, candidate.status) {
			continue
		}
		subject, err := part.EventSubject(st, candidate.key)
		if err != nil {
			return false, err
		}
		event, err := part.eventOn(ctx, subject)
		if err != nil {
			return false, err
		}
		if event != nil && event.Sequence < candidate.seq {
			return false, nil
		}
	}
	return true, nil
}

// isOrderEvent reports whether a stored message is an order's own event:
// readable, and not a repair's copy of an earlier one.
func (p Partition) isOrderEvent(msg *jetstream.RawStreamMsg) bool {
	if msg.Header.Get(HeaderRepairOf) != "" {
		return false
	}
	_, err := p.decodeEvent(msg.Subject, msg.Header, msg.Data, msg.Sequence, msg.Time)
	return err == nil
}

// eventOn returns the order event on subject (one order's event of one
// status: there is at most one), or nil when there is none. The subject's
// last message is it, unless messages that are not order events or a
// repair came after it; then the subject is read from its start, which
// costs a scan of the stream but happens only on such subjects.
func (part partitionStreams) eventOn(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	stream := part.events
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil || part.isOrderEvent(last) {
		return last, err
	}
	for seq := uint64(1); seq < last.Sequence; {
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if msg.Sequence >= last.Sequence {
			return nil, nil
		}
		if part.isOrderEvent(msg) {
			return msg, nil
		}
		seq = msg.Sequence + 1
	}
	return nil, nil
}
