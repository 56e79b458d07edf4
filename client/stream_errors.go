package client

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// permanent reports whether a stream that ended with err must not be
// reopened: the request itself is wrong or not allowed, and would fail the
// same way on any node. Everything else (a node that died or shut down, a
// broken connection, a limit reached on one node, JetStream briefly
// unreachable) is worth another try.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition,
		codes.Unimplemented, codes.NotFound, codes.AlreadyExists, codes.OutOfRange:
		return true
	}
	return false
}
