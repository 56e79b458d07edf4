package server

import (
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// slots bounds how many long-lived streams of one kind a node serves at
// once, so that overload is answered at once with RESOURCE_EXHAUSTED
// instead of growing memory and goroutines without bound.
type slots struct {
	kind  string
	limit int64 // 0: no limit
	used  atomic.Int64
}

func newSlots(kind string, limit int) *slots {
	return &slots{kind: kind, limit: int64(limit)}
}

// acquire takes a slot, or answers RESOURCE_EXHAUSTED when none is free.
// Every successful acquire must be followed by a release.
func (s *slots) acquire() error {
	if n := s.used.Add(1); s.limit > 0 && n > s.limit {
		s.used.Add(-1)
		return status.Error(codes.ResourceExhausted, fmt.Sprintf("this node serves its limit of %d %s; retry later, or on another node", s.limit, s.kind))
	}
	return nil
}

func (s *slots) release() { s.used.Add(-1) }
