// Package systemtest holds the tests that run whole ordersd nodes, as the
// binary does (internal/cli), in the test process or as child processes
// (the test binary re-executed as ordersd, so that tests can send it real
// signals): three-node clusters losing their stream leader, TLS and its
// rotation, NATS credentials, the xDS mesh, shutdown and kills, the HTTP
// port, metrics and tracing, the fault run, and the commands of the README
// and docs/. It has no code of its own; the unit tests of each package sit
// beside it.
package systemtest
