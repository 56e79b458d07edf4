// Package migrate rewrites a stream ORDERS of subject layout 1
// (ORDERS.<event>.<order_id>) into the layout the event store reads, for
// `ordersd migrate`. A run survives being killed at any point: how far it
// went is recorded in the metadata of a backup stream, and the next run goes
// on from there. One file per step: copy.go (the backup), replace.go (the
// new stream), republish.go (the events) and consumers.go (the durable
// consumers and their ack floors).
package migrate
