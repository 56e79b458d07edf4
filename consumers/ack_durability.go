package consumers

import "time"

// What a confirmed ack promises depends on how many replicas the consumer
// has, because nats-server keeps a consumer's state in two different ways
// (server/filestore.go, consumerFileStore; server/consumer.go, updateAcks):
//
//   - A replicated consumer (R3 on a cluster) proposes the ack to its Raft
//     group and answers only once a quorum has written it to its log. A
//     confirmed ack survives a SIGKILL of any node and a leader change.
//   - A consumer of one replica (the single embedded node, or R1 on an
//     external server) applies the ack in memory and answers at once; its
//     state file is rewritten at most every ConsumerStateFlushInterval.
//     A clean shutdown writes it; a SIGKILL, a crash or a power cut within
//     that interval after the confirmation loses the ack, and the event is
//     delivered again after the restart. JetStream's sync setting
//     (sync_interval: always) makes each write of the state file synchronous
//     but does not write it more often, so it does not close the window.
//
// ordersd does not second-guess the confirmation: it reports JetStream's
// answer, and the docs ("Confirmed acks and crashes") say which of the two
// a deployment gets.

// ConsumerStateFlushInterval is the longest a single-replica consumer's
// state lives only in memory: nats-server writes a consumer's state file
// at most every 100 ms (consumerFileStore.flushLoop, minTime).
const ConsumerStateFlushInterval = 100 * time.Millisecond
