// Package consumers reads the stream ORDERS for the streaming RPCs and the
// built-in worker:
//
//   - work queues (ConsumeOrders, and StreamOrders with acks on the same
//     stream): durable pull consumers fed by a fetch loop that never
//     fetches more than the client's free credit, with signed ack tokens
//     any ordersd node can settle (AckOrders), and dead letters handed
//     back to a consumer by redrive;
//   - the monitor (WatchOrders): one push subscription per node on every
//     event, fanned out in process to every watcher, with catch-up reads
//     from the stream for replays and for watchers that fall behind;
//   - the order-review worker: approves or rejects created orders.
package consumers
