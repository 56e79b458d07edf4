package eventstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

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
	// After is the cursor of the previous page (ListPage.Next); 0 for the
	// first page.
	After uint64
	// PageSize is the most orders of the page, 1 to MaxPageSize.
	PageSize int
}

// ListPage is one page of List.
type ListPage struct {
	Orders []*ordersv1.Order
	// Unreadable are the orders of the page that could not be listed: each
	// one's last message is not an order event (another publisher's, or
	// corrupt). They take no place among Orders; the rest of the page is
	// listed as if they were not there.
	Unreadable []*UnreadableError
	// Next is the cursor of the next page; 0 when there is none.
	Next uint64
}

// List returns a page of orders, oldest first, as they are at the moment
// of the call: every read goes to the stream leader, so a page reflects
// every write acknowledged before the call, on any node.
//
// Candidates come from subject filters, so JetStream selects them: without
// statuses, the orders' created events (ORDERS.created.<customer>.*), in
// the order the orders were created; with statuses, the events that put
// orders in those statuses (ORDERS.<status>.<customer>.*), in the order
// they entered them, each kept only if it is still its order's last
// event. An order enters each status at most once, so no order is listed
// twice across pages, and one that changes between pages is listed by
// what it is when its page is read. For one customer the work grows with
// that customer's events; across all customers a page examines at most
// ListScanBudget candidates.
func (s *Store) List(ctx context.Context, req ListRequest) (ListPage, error) {
	if req.PageSize < 1 || req.PageSize > MaxPageSize {
		return ListPage{}, fmt.Errorf("%w: page size must be 1 to %d, got %d", ErrInvalidArgument, MaxPageSize, req.PageSize)
	}
	statuses := req.Statuses
	current := len(statuses) > 0 // candidates must be their order's last event
	if !current {
		statuses = []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_CREATED}
	}
	filters, err := FilterSubjects(Filter{Statuses: statuses, CustomerID: req.CustomerID})
	if err != nil {
		return ListPage{}, err
	}
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return ListPage{}, err
	}
	defer cancel()
	if req.CustomerID != "" {
		return s.listOfCustomer(ctx, st.orders, filters, req, current)
	}
	sc := &scan{stream: st.orders, filters: filters, heads: make([]*jetstream.RawStreamMsg, len(filters)), cursor: req.After}
	var page ListPage
	for examined := 0; len(page.Orders) < req.PageSize; {
		budget := min(req.PageSize-len(page.Orders), ListScanBudget-examined)
		if budget == 0 {
			page.Next = sc.cursor // more may follow: go on from here
			return page, nil
		}
		batch, err := sc.next(ctx, budget)
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		if len(batch) == 0 {
			return page, nil // the end of the stream
		}
		examined += len(batch)
		if err := s.currentOrders(ctx, st.orders, batch, current, false, &page); err != nil {
			return ListPage{}, s.classify(err)
		}
	}
	// The page is full: a next page exists if any candidate follows.
	more, err := sc.peek(ctx)
	if err != nil {
		return ListPage{}, s.classify(err)
	}
	if more {
		page.Next = sc.cursor
	}
	return page, nil
}

// listOfCustomer is List for one customer. Its candidates come from the
// stream's per-subject index rather than a scan: the subjects on filters
// (one per order and status, for this customer only) and the last message
// of each, so the work grows with the customer's orders and not with the
// stream. (Reading the next message on a filter makes JetStream scan the
// stream's blocks from the start position, and a read that finds none
// scans to the end, at a cost that grows with the stream.)
func (s *Store) listOfCustomer(ctx context.Context, stream jetstream.Stream, filters []string, req ListRequest, current bool) (ListPage, error) {
	var subjects []string
	for _, f := range filters {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(f))
		if err != nil {
			return ListPage{}, s.classify(err)
		}
		for subject := range info.State.Subjects {
			subjects = append(subjects, subject)
		}
	}
	candidates := make([]*jetstream.RawStreamMsg, len(subjects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listReadParallelism)
	for i, subject := range subjects {
		g.Go(func() error {
			msg, err := stream.GetLastMsgForSubject(gctx, subject)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err == nil && !current && !isOrderEvent(msg) {
				msg, err = firstOrderEvent(gctx, stream, subject, msg)
			}
			candidates[i] = msg
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return ListPage{}, s.classify(err)
	}
	candidates = slices.DeleteFunc(candidates, func(m *jetstream.RawStreamMsg) bool { return m == nil || m.Sequence <= req.After })
	slices.SortFunc(candidates, func(a, b *jetstream.RawStreamMsg) int { return cmp.Compare(a.Sequence, b.Sequence) })
	var page ListPage
	for len(candidates) > 0 && len(page.Orders) < req.PageSize {
		batch := candidates[:min(req.PageSize-len(page.Orders), len(candidates))]
		candidates = candidates[len(batch):]
		if err := s.currentOrders(ctx, stream, batch, current, true, &page); err != nil {
			return ListPage{}, s.classify(err)
		}
		if len(candidates) > 0 {
			page.Next = batch[len(batch)-1].Sequence
		} else {
			page.Next = 0
		}
	}
	return page, nil
}

// scan walks the stream's messages on a set of subject filters in stream
// order, one message read at a time from the stream leader ("next message
// on this subject from sequence n"), so it sees every acknowledged write.
type scan struct {
	stream  jetstream.Stream
	filters []string
	heads   []*jetstream.RawStreamMsg // the next message of each filter; nil: not read yet
	ended   []bool
	cursor  uint64 // the sequence of the last message returned
}

// next returns up to n messages after the cursor, in stream order.
func (sc *scan) next(ctx context.Context, n int) ([]*jetstream.RawStreamMsg, error) {
	var batch []*jetstream.RawStreamMsg
	for len(batch) < n {
		i, err := sc.first(ctx)
		if err != nil {
			return nil, err
		}
		if i < 0 {
			break
		}
		batch = append(batch, sc.heads[i])
		sc.cursor = sc.heads[i].Sequence
		sc.heads[i] = nil
	}
	return batch, nil
}

// peek reports whether any message follows the cursor.
func (sc *scan) peek(ctx context.Context) (bool, error) {
	i, err := sc.first(ctx)
	return i >= 0, err
}

// first reads the next message of every filter that has none at hand and
// returns the index of the earliest, or -1 when every filter has ended.
func (sc *scan) first(ctx context.Context) (int, error) {
	if sc.ended == nil {
		sc.ended = make([]bool, len(sc.filters))
	}
	best := -1
	for i, filter := range sc.filters {
		if sc.heads[i] == nil && !sc.ended[i] {
			msg, err := sc.stream.GetMsg(ctx, sc.cursor+1, jetstream.WithGetMsgSubject(filter))
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

// currentOrders reads the current state of each candidate's order, in
// parallel, and adds them to page in the candidates' order. With
// onlyCurrent, an order whose last event is not its candidate has moved on
// and is left out.
//
// Messages that are not order events (another publisher's) never fail
// the page. An order whose last message is one is added to
// page.Unreadable instead of page.Orders. A candidate that is itself one,
// or a repair (Repair's copy of an earlier event), is not the event that
// makes its order a candidate: with onlyCurrent it is listed only if it is
// the order's last event and readable (a repair is); without, the order is
// listed from it only when perSubject (the candidates are the last message
// of each subject, so nothing else stands for the order), and left to its
// own created event otherwise.
func (s *Store) currentOrders(ctx context.Context, stream jetstream.Stream, candidates []*jetstream.RawStreamMsg, onlyCurrent, perSubject bool, page *ListPage) error {
	found := make([]*ordersv1.Order, len(candidates))
	broken := make([]*UnreadableError, len(candidates))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(listReadParallelism)
	for i, msg := range candidates {
		_, key, ok := parseSubject(msg.Subject)
		if !ok {
			s.unreadable.Note(unreadable(msg.Subject, msg.Sequence, "the subject is not %s.<event>.<customer_id>.<order_id>", StreamName))
			continue
		}
		stands := perSubject || onlyCurrent || isOrderEvent(msg)
		g.Go(func() error {
			last, err := s.lastEvent(ctx, stream, key)
			switch {
			case errors.Is(err, ErrNotFound):
				return nil // an index entry without events: no order yet
			case AsUnreadable(err) != nil:
				if stands {
					broken[i] = AsUnreadable(err)
				}
				return nil
			case err != nil:
				return err
			}
			if onlyCurrent && last.event.GetSequence() != msg.Sequence {
				return nil
			}
			if stands {
				found[i] = last.event.GetOrder()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := range candidates {
		switch {
		case found[i] != nil:
			page.Orders = append(page.Orders, found[i])
		case broken[i] != nil && !slices.ContainsFunc(page.Unreadable, func(u *UnreadableError) bool { return u.Sequence == broken[i].Sequence }):
			page.Unreadable = append(page.Unreadable, broken[i])
		}
	}
	return nil
}

// isOrderEvent reports whether a stored message is an order's own event:
// readable, and not a repair's copy of an earlier one.
func isOrderEvent(msg *jetstream.RawStreamMsg) bool {
	if msg.Header.Get(HeaderRepairOf) != "" {
		return false
	}
	_, err := decodeEvent(msg.Subject, msg.Header, msg.Data, msg.Sequence, msg.Time)
	return err == nil
}

// firstOrderEvent is the candidate of a created subject whose last message
// is not the order's created event (another publisher's, or a repair):
// the subject's first message, which is, so that the order keeps its
// place; last when the first is not one either.
func firstOrderEvent(ctx context.Context, stream jetstream.Stream, subject string, last *jetstream.RawStreamMsg) (*jetstream.RawStreamMsg, error) {
	first, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		return nil, err
	}
	if isOrderEvent(first) {
		return first, nil
	}
	return last, nil
}
