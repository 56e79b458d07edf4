package eventstore

import (
	"context"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// HeaderRepairOf marks a repair event (see Repair): it holds the stream
// sequences, comma-separated, of the unreadable messages it stands after.
const HeaderRepairOf = "Ordersd-Repair-Of"

// RepairReport is what Repair found and did.
type RepairReport struct {
	// Unreadable are the order's messages that are not order events, oldest
	// first: those after its last readable event (which a repair stands
	// after) and any earlier ones that an earlier repair stood after.
	Unreadable []*UnreadableError
	// Order is the order's last readable state: after a repair, with the
	// repair event's sequence as its revision.
	Order *ordersv1.Order
	// Repaired is true when a repair event was stored; false when the
	// order's last message is readable (nothing to repair) or when only
	// asked to look.
	Repaired bool
}

// Repair makes an order readable again after messages that are not order
// events (another publisher's, on the order's subjects) were stored after
// its last event. The streams deny delete and purge (JetStream can never
// allow them again on an existing stream), so the foreign messages cannot
// be removed; instead Repair appends a repair event: a copy of the order's
// last readable event (same subject, state and request id, marked with
// HeaderRepairOf), published with the order's last sequence expected, so
// that a message arriving meanwhile makes it fail with ErrConflict. The
// repair becomes the order's last event: reads, transitions and listings
// go on from it, and GetOrderHistory reports the foreign messages it
// stands after in their place. With validateOnly nothing is stored: the
// report says what a repair would restore.
//
// ErrNotFound when the order id was never taken, ErrNothingToRestore when
// none of the order's messages is readable.
func (s *Store) Repair(ctx context.Context, orderID string, validateOnly bool) (RepairReport, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return RepairReport{}, err
	}
	defer cancel()
	part := st.of(s.layout.Of(orderID))
	key, err := s.locate(ctx, part, orderID)
	if err != nil {
		return RepairReport{}, s.classify(err)
	}
	filter, _ := part.OrderSubjects(key) // valid: locate checked it
	sc := newScan(part, []string{filter}, 0)
	var (
		report   RepairReport
		good     storedEvent
		goodMsg  *jetstream.RawStreamMsg
		lastSeq  uint64
		toRepair []string // sequences of the unreadable messages after good
	)
	for {
		batch, err := sc.next(ctx, readBatch)
		if err != nil {
			return RepairReport{}, s.classify(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, raw := range batch {
			lastSeq = raw.Sequence
			ev, err := part.decodeEvent(raw.Subject, raw.Header, raw.Data, raw.Sequence, raw.Time)
			if u := AsUnreadable(err); u != nil {
				s.unreadable.Note(u)
				report.Unreadable = append(report.Unreadable, u)
				toRepair = append(toRepair, strconv.FormatUint(u.Sequence, 10))
				continue
			}
			if err != nil {
				return RepairReport{}, err
			}
			good, goodMsg, toRepair = ev, raw, nil
		}
	}
	if goodMsg == nil {
		if lastSeq == 0 {
			return RepairReport{}, s.classify(ErrNotFound)
		}
		return report, ErrNothingToRestore
	}
	report.Order = good.event.GetOrder()
	if len(toRepair) == 0 || validateOnly {
		return report, nil
	}
	msg, err := s.layout.EncodeEvent(good.event.GetOrder(), "")
	if err != nil {
		return RepairReport{}, err
	}
	// The request id stays with the state it made, so a retry of that
	// write is still recognised; there is no Nats-Msg-Id, which would make
	// JetStream take the repair for a duplicate of that write.
	if good.requestID != "" {
		msg.Header.Set(HeaderRequestID, good.requestID)
	}
	msg.Header.Set(HeaderRepairOf, strings.Join(toRepair, ","))
	ack, err := s.publish(ctx, msg, s.layout.ExpectRevision(key, lastSeq))
	if IsWrongLastSequence(err) {
		return RepairReport{}, &ConflictError{Expected: lastSeq}
	}
	if err != nil {
		return RepairReport{}, s.classify(err)
	}
	report.Order = proto.Clone(good.event.GetOrder()).(*ordersv1.Order)
	report.Order.Revision = ack.Sequence
	report.Repaired = true
	s.log.Warn("order repaired: its last readable state is stored again after messages that are not order events",
		"order_id", orderID, "sequence", ack.Sequence, "restored_from", goodMsg.Sequence, "unreadable", strings.Join(toRepair, ","))
	return report, nil
}
