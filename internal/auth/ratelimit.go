package auth

import (
	"context"
	"fmt"
	"net"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// maxTrackedCallers bounds the rate limiter's memory: past it, the buckets
// start over (a burst of distinct callers cannot grow it without bound).
const maxTrackedCallers = 100_000

// RateLimiter allows each caller a steady rate of calls with bursts; a
// call over it is refused at once with RESOURCE_EXHAUSTED (by the
// grpc-ecosystem ratelimit interceptor). A caller is its identity, or its
// IP address when authentication is off.
type RateLimiter struct {
	perSecond rate.Limit
	burst     int

	mu      sync.Mutex // protects buckets
	buckets map[string]*rate.Limiter
}

// NewRateLimiter allows perSecond calls a second per caller, in bursts of
// up to burst.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	return &RateLimiter{perSecond: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// Limit implements the ratelimit.Limiter of go-grpc-middleware.
func (r *RateLimiter) Limit(ctx context.Context) error {
	caller := callerOf(ctx)
	r.mu.Lock()
	b, ok := r.buckets[caller]
	if !ok {
		if len(r.buckets) >= maxTrackedCallers {
			r.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(r.perSecond, r.burst)
		r.buckets[caller] = b
	}
	r.mu.Unlock()
	if !b.Allow() {
		return fmt.Errorf("%s is over its limit of %v calls a second", caller, float64(r.perSecond))
	}
	return nil
}

func callerOf(ctx context.Context) string {
	if id := FromContext(ctx); id != nil {
		return "identity " + id.Name
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "address " + host
		}
		return "address " + p.Addr.String()
	}
	return "anonymous"
}
