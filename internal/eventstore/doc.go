// Package eventstore keeps orders as events in the NATS JetStream stream
// ORDERS, and is the only place that knows how they are laid out there.
//
// An event is published on ORDERS.<event>.<order_id>, where <event> is the
// order's new status (created, approved, ...). Its payload is the order's full
// state after the event (an ordersv1.Order in protobuf), so the last message on
// ORDERS.*.<order_id> is the order's current state and its stream sequence is
// the order's revision. Writes are guarded by an expected-last-sequence check
// on ORDERS.*.<order_id>, which serialises all changes to one order without a
// lock, and made idempotent by request ids stored in event headers.
//
// The package also provisions the stream and runs the embedded NATS server
// that ordersd uses when it is not pointed at an existing NATS deployment.
package eventstore
