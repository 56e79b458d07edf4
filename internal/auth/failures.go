package auth

import (
	"context"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// Failed authentications an address may make: DefaultFailureBurst at once
// (Config.FailureBurst), then one per FailureInterval. Past them, its calls
// are refused before their credentials are checked, so that guessing
// tokens is slow and costs the node nothing (a JWT's signature check does
// cost).
const (
	DefaultFailureBurst = 10
	FailureInterval     = time.Second
)

// failureThrottle counts failed authentications per peer address.
type failureThrottle struct {
	burst int

	mu      sync.Mutex // protects buckets
	buckets map[string]*rate.Limiter
}

func newFailureThrottle(burst int) *failureThrottle {
	if burst <= 0 {
		burst = DefaultFailureBurst
	}
	return &failureThrottle{burst: burst, buckets: map[string]*rate.Limiter{}}
}

// allowed reports whether addr may try to authenticate now.
func (f *failureThrottle) allowed(addr string) bool {
	f.mu.Lock()
	b, ok := f.buckets[addr]
	f.mu.Unlock()
	return !ok || b.Tokens() >= 1
}

// failed counts a failed authentication of addr.
func (f *failureThrottle) failed(addr string) {
	f.mu.Lock()
	b, ok := f.buckets[addr]
	if !ok {
		if len(f.buckets) >= maxTrackedCallers {
			f.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(rate.Every(FailureInterval), f.burst)
		f.buckets[addr] = b
	}
	f.mu.Unlock()
	b.Allow()
}

// peerAddress is the caller's IP address (without the port, which changes
// with every connection).
func peerAddress(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}
