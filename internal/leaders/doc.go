// Package leaders spreads the Raft leaders of ordersd's streams over the
// servers of a JetStream cluster, and reports where they are.
//
// JetStream places a new stream's leader at random, and a node that dies
// hands its leaderships to the survivors, which keep them when it returns:
// left alone, one server can end up taking the writes of every stream. A
// stream config cannot name its leader, but a leader stepdown can name a
// preferred server ($JS.API.STREAM.LEADER.STEPDOWN.<stream> with
// placement.preferred). So a Rebalancer reads the streams' placement from
// JetStream's stream info at every check, plans the fewest moves that
// even out the leaders (Plan), and asks for them.
//
// Only one process of a cluster moves leaders at a time, or two would
// undo each other's moves: ordersd gives that role to the node whose
// embedded NATS server is the JetStream meta leader, the one server the
// cluster's own Raft has elected to place streams (no lock, no state of
// our own; when it dies the next meta leader takes over).
package leaders
