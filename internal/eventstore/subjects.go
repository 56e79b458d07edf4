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

// Layout names the subject layout of the stream ORDERS. It is kept in the
// stream's metadata (MetadataLayout), so that a node finds out at start-up
// whether the stored events are laid out as it reads them.
//
// Layout 2 is ORDERS.<event>.<customer_id>.<order_id>: the customer token
// lets JetStream itself select one customer's events (a watch, a work
// queue, ListOrders), at a cost that grows with that customer's events, not
// with the stream. Layout 1 (no metadata) was ORDERS.<event>.<order_id>;
// `ordersd migrate` rewrites it into layout 2.
const Layout = "2"

// MetadataLayout is the stream metadata key holding Layout.
const MetadataLayout = "ordersd_layout"

// MetadataMigration is the metadata key that tells how far a migration
// (package migrate) went: on its backup stream, one of the migration's
// phases; on ORDERS, a marker while its events are being published again,
// which makes every node refuse the stream (ErrLayoutOutdated).
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

// CapturedSubjects are the subjects the stream ORDERS captures: exactly
// those of Layout's events, ORDERS.<event>.*.* for each event type. A
// publish on any other subject under ORDERS. (ORDERS.created,
// ORDERS.junk.x) is stored by no stream, and the publisher gets
// JetStream's "no stream" answer instead of a message landing silently
// among the orders.
func CapturedSubjects() []string {
	return layoutSubjects(StreamName)
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

// EventSubject is the subject an event of the given status is published on:
// ORDERS.<event>.<customer_id>.<order_id>.
func EventSubject(status ordersv1.OrderStatus, k OrderKey) (string, error) {
	token := EventType(status)
	if token == "" {
		return "", fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, status)
	}
	if err := k.Check(); err != nil {
		return "", err
	}
	return StreamName + "." + token + "." + k.CustomerID + "." + k.OrderID, nil
}

// OrderSubjects is the filter matching every event of one order:
// ORDERS.*.<customer_id>.<order_id>.
func OrderSubjects(k OrderKey) (string, error) {
	if err := k.Check(); err != nil {
		return "", err
	}
	return StreamName + ".*." + k.CustomerID + "." + k.OrderID, nil
}

// parseSubject splits ORDERS.<event>.<customer_id>.<order_id> into its
// status and order key.
func parseSubject(subject string) (ordersv1.OrderStatus, OrderKey, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != StreamName {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
	}
	k := OrderKey{CustomerID: parts[2], OrderID: parts[3]}
	if k.Check() != nil {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
	}
	for status, token := range eventTokens {
		if token == parts[1] {
			return status, k, true
		}
	}
	return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, OrderKey{}, false
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

// FilterSubjects returns the subject filters that select exactly f's
// events: ORDERS.<event>.<customer_id>.<order_id> with '*' for each token
// f leaves open, one filter per status (every status: one filter with '*'),
// and none (every event) for an empty f. A status listed twice gives one
// filter, as JetStream refuses overlapping filters. An unknown status or an
// id that is not subject-safe is ErrInvalidArgument.
func FilterSubjects(f Filter) ([]string, error) {
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
		if f.CustomerID == "" && f.OrderID == "" {
			return nil, nil
		}
		return []string{StreamName + ".*." + customer + "." + order}, nil
	}
	filters := make([]string, 0, len(f.Statuses))
	for _, st := range f.Statuses {
		token := EventType(st)
		if token == "" {
			return nil, fmt.Errorf("%w: status %v has no event subject", ErrInvalidArgument, st)
		}
		if subject := StreamName + "." + token + "." + customer + "." + order; !slices.Contains(filters, subject) {
			filters = append(filters, subject)
		}
	}
	return filters, nil
}

// SubjectStatus returns the status whose events are stored on subject,
// and false when subject is not an event subject of the layout.
func SubjectStatus(subject string) (ordersv1.OrderStatus, bool) {
	status, _, ok := parseSubject(subject)
	return status, ok
}
