// Package client is the Go client of ordersd for services that call it:
// one connection to one node or many, with what every caller would
// otherwise write by hand.
//
//   - [Dial] balances calls round-robin across the nodes (or
//     weighted_round_robin on the load they report), checks their health
//     (a node that reports NOT_SERVING, such as one shutting down, gets no
//     new calls), keeps connections alive, and speaks TLS, mutual TLS and
//     bearer tokens.
//   - Calls that fail with UNAVAILABLE are retried on another node by gRPC
//     itself (the retry policy of [ServiceConfig]). Every write that
//     carries no request_id gets a generated one first, so a write whose
//     outcome was unknown (its node died mid-call) is stored once.
//   - [Client.Consume] runs a handler for each event of a work queue, in
//     the style of Pub/Sub's Receive: flow control, acks batched, the ack
//     deadline extended while the handler runs, a NAK with backoff when it
//     fails, a graceful stop, and a reconnect when the stream breaks.
//   - [Client.Watch] follows events without a gap or a repeat across
//     disconnects and node failures, and says when it has caught up.
//
// # Targets and service meshes
//
// A target is one address ("10.0.0.7:50051"), a list of them
// ("10.0.0.7:50051,10.0.0.8:50051": a static list, balanced across), a name
// that DNS resolves to many addresses ("orders.prod.svc:50051", resolved
// as dns:///orders.prod.svc:50051), or any gRPC URI with a registered scheme
// ("dns:///…", "unix:///…", "xds:///…").
//
// In a proxyless gRPC service mesh (Istio proxyless, Traffic Director) the
// process has an xDS bootstrap (GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG). Then a target without a scheme resolves
// through xds:/// and the mesh's control plane decides balancing, retries
// and security. xDS support is large (it links Envoy's API, a control-plane
// client and its balancers), so it lives in the subpackage
// github.com/ordersd/ordersd/client/xds: import it, and Dial uses xDS when
// a bootstrap is present. Without it, Dial refuses a target without a scheme
// while a bootstrap is present, rather than bypass the mesh silently;
// an explicit "dns:///…" target always resolves through DNS.
package client
