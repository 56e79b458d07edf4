package eventstore

import (
	"fmt"
	"slices"
	"strings"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// StreamName is the JetStream stream holding every order event.
const StreamName = "ORDERS"

// StreamSubjects is the filter of a reader of every event: every subject
// under ORDERS. The stream itself captures only the subjects of its layout
// (CapturedSubjects).
const StreamSubjects = StreamName + ".>"

// MetadataLayout is the stream metadata key holding the layout's version
// (Layout.Version), so that a node finds out at start-up whether the
// stored events are laid out as it reads them. Layout 1 (no metadata) was
// ORDERS.<event>.<order_id>; `ordersd migrate` rewrites it into layout 2.
const MetadataLayout = "ordersd_layout"

// MetadataMigration is the metadata key that tells how far a migration
// (package migrate) went: on its backup stream, one of the migration's
// phases; on ORDERS, a marker while its events are being published again,
// which makes every node refuse the stream (ErrLayoutOutdated); on a
// partition, a marker while a migration fills it; on the streams of
// layout 2 after a migration to partitions, MigratedToPartitions.
const MetadataMigration = "ordersd_migration"

// Bounds on values that enter subjects and headers.
const (
	MaxIDLen        = 64  // order, customer and consumer ids
	MaxRequestIDLen = 128 // request ids (AIP-155)
)

// eventTokens maps each storable status to the <event> token of its subject.
var eventTokens = map[ordersv1.OrderStatus]string{
	ordersv1.OrderStatus_ORDER_STATUS_CREATED:   "created",
	ordersv1.OrderStatus_ORDER_STATUS_APPROVED:  "approved",
	ordersv1.OrderStatus_ORDER_STATUS_REJECTED:  "rejected",
	ordersv1.OrderStatus_ORDER_STATUS_PAID:      "paid",
	ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:   "shipped",
	ordersv1.OrderStatus_ORDER_STATUS_CANCELLED: "cancelled",
}

// eventOrder lists the storable statuses in the order of the enum, so that
// the subjects built from them come out the same every time.
var eventOrder = []ordersv1.OrderStatus{
	ordersv1.OrderStatus_ORDER_STATUS_CREATED,
	ordersv1.OrderStatus_ORDER_STATUS_APPROVED,
	ordersv1.OrderStatus_ORDER_STATUS_REJECTED,
	ordersv1.OrderStatus_ORDER_STATUS_PAID,
	ordersv1.OrderStatus_ORDER_STATUS_SHIPPED,
	ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

// CapturedSubjects are the subjects the stream ORDERS of layout 2
// captures: exactly those of its events, ORDERS.<event>.*.* for each event type. A
// publish on any other subject under ORDERS. (ORDERS.created,
// ORDERS.junk.x) is stored by no stream, and the publisher gets
// JetStream's "no stream" answer instead of a message landing silently
// among the orders.
func CapturedSubjects() []string {
	return Partition{}.CapturedSubjects()
}

// layoutSubjects are the event subjects under prefix: prefix.<event>.*.*
// for each event type. A partitioned layout gives each partition's stream
// its own prefix under ORDERS.
func layoutSubjects(prefix string) []string {
	subjects := make([]string, 0, len(eventOrder))
	for _, status := range eventOrder {
		subjects = append(subjects, prefix+"."+eventTokens[status]+".*.*")
	}
	return subjects
}

// EventType returns the <event> subject token for status, or "" when status
// is not a storable status (unspecified or unknown).
func EventType(status ordersv1.OrderStatus) string {
	return eventTokens[status]
}

// StatusOfEventType is the status whose events have the <event> subject
// token (EventType's inverse); false when no status has it.
func StatusOfEventType(token string) (ordersv1.OrderStatus, bool) {
	for status, t := range eventTokens {
		if t == token {
			return status, true
		}
	}
	return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, false
}

// ValidToken reports whether s is 1 to maxLen characters drawn only from
// letters, digits, '-' and '_'. It is the allow-list for every client value
// that enters a subject or a header: '.', '*', '>', spaces, control
// characters and non-ASCII runes can never pass.
func ValidToken(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// OrderKey names one order in the stream: its events are on
// ORDERS.<event>.<CustomerID>.<OrderID>. The customer of an order never
// changes; the order-id index (see index.go) finds it from the order id.
type OrderKey struct {
	CustomerID string
	OrderID    string
}

// KeyOf returns the key of order.
func KeyOf(order *ordersv1.Order) OrderKey {
	return OrderKey{CustomerID: order.GetCustomerId(), OrderID: order.GetOrderId()}
}

// Check fails with ErrInvalidArgument when the order id or the customer
// id is not subject-safe (ValidToken).
func (k OrderKey) Check() error {
	if !ValidToken(k.OrderID, MaxIDLen) {
		return fmt.Errorf("%w: order id %q is not subject-safe", ErrInvalidArgument, k.OrderID)
	}
	if !ValidToken(k.CustomerID, MaxIDLen) {
		return fmt.Errorf("%w: customer id %q is not subject-safe", ErrInvalidArgument, k.CustomerID)
	}
	return nil
}

// EventSubject is the subject an event of the given status is published on
// in layout 2 (Partition.EventSubject in any layout).
func EventSubject(status ordersv1.OrderStatus, k OrderKey) (string, error) {
	return Partition{}.EventSubject(status, k)
}

// EventSubject is the subject an event of the given status is published on:
// <prefix>.<event>.<customer_id>.<order_id>, the prefix ORDERS in layout 2
// and ORDERS.<k> in layout 3.
func (p Partition) EventSubject(status ordersv1.OrderStatus, k OrderKey) (string, error) {
	token := EventType(status)
	if token == "" {
		return "", fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, status)
	}
	if err := k.Check(); err != nil {
		return "", err
	}
	return p.eventPrefix() + "." + token + "." + k.CustomerID + "." + k.OrderID, nil
}

// OrderSubjects is the filter matching every event of one order in layout 2
// (Partition.OrderSubjects in any layout).
func OrderSubjects(k OrderKey) (string, error) { return Partition{}.OrderSubjects(k) }

// OrderSubjects is the filter matching every event of one order:
// <prefix>.*.<customer_id>.<order_id>.
func (p Partition) OrderSubjects(k OrderKey) (string, error) {
	if err := k.Check(); err != nil {
		return "", err
	}
	return p.eventPrefix() + ".*." + k.CustomerID + "." + k.OrderID, nil
}

// parseSubject splits <prefix>.<event>.<customer_id>.<order_id> into its
// status and order key. In layout 3 the order must also belong to the
// partition: a message another program put in a partition its order id
// does not map to is no order's event there.
func (p Partition) parseSubject(subject string) (ordersv1.OrderStatus, OrderKey, bool) {
	rest, ok := strings.CutPrefix(subject, p.eventPrefix()+".")
	if !ok {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
	}
	k := OrderKey{CustomerID: parts[1], OrderID: parts[2]}
	if k.Check() != nil || (p.Of > 0 && PartitionOf(k.OrderID, p.Of) != p.Number) {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
	}
	status, ok := StatusOfEventType(parts[0])
	return status, k, ok
}

// subjectForm describes the partition's event subjects in messages about
// a subject that is not one.
func (p Partition) subjectForm() string {
	return p.eventPrefix() + ".<event>.<customer_id>.<order_id>"
}

// Filter says which events a reader wants, by what their subjects carry.
// It is the one place where what a client asks for becomes subject
// filters: work queues, watches, lists and reads all go through
// FilterSubjects, so JetStream selects the events and none is decoded only
// to be thrown away.
type Filter struct {
	// Statuses selects events of these types; every type when empty.
	Statuses []ordersv1.OrderStatus
	// CustomerID selects one customer's events; every customer's when empty.
	CustomerID string
	// OrderID selects one order's events; every order's when empty. With an
	// order id but no customer id the filter has a wildcard where the
	// customer goes, which JetStream matches against every customer: name
	// the customer (readers look it up in the order-id index) to avoid it.
	OrderID string
}

// FilterSubjects is Partition.FilterSubjects of layout 2.
func FilterSubjects(f Filter) ([]string, error) { return Partition{}.FilterSubjects(f) }

// FilterSubjects returns the subject filters that select exactly f's
// events in the partition: <prefix>.<event>.<customer_id>.<order_id> with
// '*' for each token f leaves open, one filter per status (every status:
// one filter with '*'); for an empty f, none (every event) in layout 2 and
// ORDERS.<k>.> in layout 3, whose streams hold claims beside the events. A status listed twice gives one
// filter, as JetStream refuses overlapping filters. An unknown status or an
// id that is not subject-safe is ErrInvalidArgument.
func (p Partition) FilterSubjects(f Filter) ([]string, error) {
	customer, order := "*", "*"
	if f.CustomerID != "" {
		if !ValidToken(f.CustomerID, MaxIDLen) {
			return nil, fmt.Errorf("%w: customer id %q is not subject-safe", ErrInvalidArgument, f.CustomerID)
		}
		customer = f.CustomerID
	}
	if f.OrderID != "" {
		if !ValidToken(f.OrderID, MaxIDLen) {
			return nil, fmt.Errorf("%w: order id %q is not subject-safe", ErrInvalidArgument, f.OrderID)
		}
		order = f.OrderID
	}
	if len(f.Statuses) == 0 {
		switch {
		case f.CustomerID == "" && f.OrderID == "" && p.Of == 0:
			return nil, nil
		case f.CustomerID == "" && f.OrderID == "":
			return []string{p.Subjects()}, nil // not the claims beside the events
		}
		return []string{p.eventPrefix() + ".*." + customer + "." + order}, nil
	}
	filters := make([]string, 0, len(f.Statuses))
	for _, st := range f.Statuses {
		token := EventType(st)
		if token == "" {
			return nil, fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, st)
		}
		if subject := p.eventPrefix() + "." + token + "." + customer + "." + order; !slices.Contains(filters, subject) {
			filters = append(filters, subject)
		}
	}
	return filters, nil
}

// SubjectStatus returns the status whose events are stored on subject,
// and false when subject is not an event subject of the layout.
func SubjectStatus(subject string) (ordersv1.OrderStatus, bool) {
	return Partition{}.SubjectStatus(subject)
}

// SubjectStatus returns the status whose events are stored on subject, and
// false when subject is not an event subject of the partition.
func (p Partition) SubjectStatus(subject string) (ordersv1.OrderStatus, bool) {
	status, _, ok := p.parseSubject(subject)
	return status, ok
}
