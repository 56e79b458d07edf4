// Package migrate rewrites the streams of an older layout into the one
// the event store reads, for `ordersd migrate`. A run survives being
// killed at any point: how far it went is recorded in stream metadata,
// and the next run goes on from there.
//
// Run takes a stream ORDERS of subject layout 1 (ORDERS.<event>.<order_id>)
// to layout 2, one file per step: copy.go (the backup), replace.go (the
// new stream), republish.go (the events) and consumers.go (the durable
// consumers and their ack floors).
//
// RunPartitions takes layout 2 to layout 3 (`ordersd migrate --partitions
// N`), keeping ORDERS and ORDER_IDS as the backup: partition.go (the
// phases and markers), partition_republish.go (claims and events into
// their partitions) and partition_consumers.go (a durable consumer on
// every partition).
package migrate
