// Package natsconn is where ordersd's NATS connection comes from: the
// embedded NATS server with JetStream that ordersd runs in process when it
// is not pointed at an existing NATS deployment (alone or as one node of a
// cluster of ordersd nodes), the authorization of that server's optional
// listener, and the connection to it or to an external deployment.
package natsconn
