// Package eventstore keeps orders as events in the NATS JetStream stream
// ORDERS, and is the only place that knows how they are laid out there.
//
// An event is published on ORDERS.<event>.<customer_id>.<order_id> (subject
// layout 2, recorded in the stream's metadata), where <event> is the order's
// new status (created, approved, ...). Its payload is the order's full state
// after the event (an ordersv1.Order in protobuf), so the last message on
// ORDERS.*.<customer_id>.<order_id> is the order's current state and its
// stream sequence is the order's revision. The stream ORDER_IDS maps each
// order id to its customer (ORDER_IDS.<order_id>), so that a call naming
// only an order reads literal subjects. Writes are guarded by an
// expected-last-sequence check on ORDERS.*.<customer_id>.<order_id>, which
// serialises all changes to one order without a lock, and made idempotent by
// request ids stored in event headers.
//
// The package also provisions the streams ORDERS and ORDER_IDS (with those
// of its companions: the dead letters and redrive markers of package
// deadletters) and administers the durable consumers of ORDERS. Packages
// beside it build on it and are not imported by it: deadletters, migrate
// (the rewrite of a stream of layout 1, ORDERS.<event>.<order_id>) and
// natsconn (the embedded NATS server and the connection).
package eventstore
