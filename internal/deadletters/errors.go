package deadletters

import "errors"

// Sentinel errors. Callers compare with errors.Is; the gRPC layer maps each
// to one status code.
var (
	// ErrNotFound: no dead letter of the consumer has the id.
	ErrNotFound = errors.New("dead letter not found")
	// ErrOff: dead letters are not recorded in this deployment (the error
	// says why: another stream holds the subjects they need); everything
	// else is served.
	ErrOff = errors.New("dead letters are not recorded")
)
