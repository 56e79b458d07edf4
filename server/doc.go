// Package server serves orders.v1.OrderService and orders.v1.QueueService
// over gRPC: it validates
// requests, calls the event store, maps its errors to gRPC status codes in
// one place (errors.go), and assembles the gRPC server with its
// interceptors, health service and reflection.
package server
