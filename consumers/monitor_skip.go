package consumers

import (
	"github.com/ordersd/ordersd/internal/eventstore"
)

// ReportUnreadableTo makes the monitor report the messages it meets that
// are not order events to u, which the node's store shares, so that each
// is logged and counted once per process. Call it before the first watch.
func (m *Monitor) ReportUnreadableTo(u *eventstore.Unreadables) {
	m.unreadable = u
}

// skip reports a live message that is not an order event, and tells every
// watcher whose filters it matches that its sequence was skipped and why,
// without blocking (a full buffer makes the watcher catch up, as in
// deliver). m.mu is held.
func (m *Monitor) skip(part eventstore.Partition, err error) {
	u := eventstore.AsUnreadable(err)
	if u == nil {
		m.log.Warn("monitor skips a message it cannot read", "err", err)
		return
	}
	if m.unreadable != nil {
		m.unreadable.Note(u)
	} else {
		m.log.Warn("monitor skips a message that is not an order event", "sequence", u.Sequence, "subject", u.Subject, "reason", u.Reason)
	}
	shared := m.shared(part)
	shared.skipped = u
	m.recent.add(shared)
	for w := range m.watchers {
		if !w.spec.matchesUnreadable(part, u) {
			continue
		}
		select {
		case w.events <- shared:
		default:
			close(w.behind)
			m.remove(w)
		}
	}
}
