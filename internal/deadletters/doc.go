// Package deadletters keeps the dead letters of ordersd's work queues and
// hands them back to their consumers (redrive).
//
// Dead letters are recorded by JetStream itself, not by ordersd: when a
// consumer of ORDERS gives up on an event (its delivery reached the
// consumer's MaxDeliver, or a client terminated it with +TERM), nats-server
// publishes an advisory on $JS.EVENT.ADVISORY.CONSUMER.<kind>.<stream>.<consumer>,
// and the stream ORDERS_DEAD_LETTERS stores those advisories. So a dead
// letter is kept even when no ordersd node runs at that moment: an
// in-process listener would miss it.
//
// A redrive never copies an event onto ORDERS.> (an order's history never
// changes). It stores a small marker, the event's ORDERS sequence, on
// ORDERS_REDRIVE.<consumer> in the stream ORDERS_REDRIVE, and deletes the
// dead letter. Each consumer that has had a redrive gets a second durable
// pull consumer of the same name on ORDERS_REDRIVE, with the same ack wait,
// max deliveries and backoff; ConsumeOrders reads it beside the consumer of
// ORDERS and delivers the marked event from ORDERS with an ack token of the
// marker's delivery, so acking the delivery acks the marker, and attempts
// are counted afresh, once per redrive. Given up on again, the marker's
// own advisory (on ...<kind>.ORDERS_REDRIVE.<consumer>) makes a new dead
// letter, which leads back to the event through the marker.
//
// The event store (package eventstore) provisions these streams with its
// own and tells this package of each change to a durable consumer: a
// Store is its companion (eventstore.Companion).
package deadletters
