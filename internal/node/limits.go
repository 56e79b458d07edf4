package node

import (
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what clients can make a node hold. Past a limit, calls are
// refused at once (RESOURCE_EXHAUSTED, or a connection error for
// transport limits) rather than queued.
type Limits struct {
	MaxRecvMsgSize       int    // largest request message, in bytes
	MaxConcurrentStreams uint32 // calls in progress at once on one connection
	MaxWatchers          int    // WatchOrders streams on the node
	MaxConsumers         int    // ConsumeOrders streams on the node
	// RatePerSecond and RateBurst bound each caller's calls (per identity,
	// or per IP address without authentication); 0: no limit.
	RatePerSecond float64
	RateBurst     int
}

// DefaultLimits fit the API's own bounds (a create holds at most 100 items
// of bounded size, an ack batch at most 1,000 tokens) with room to spare.
var DefaultLimits = Limits{MaxRecvMsgSize: 1 << 20, MaxConcurrentStreams: 1000, MaxWatchers: 10_000, MaxConsumers: 1000}

// Keepalive settings. Clients may ping at most every 10 s, even between
// calls; more often and the connection is closed (a ping flood costs
// nothing to send). The server pings a connection idle for a minute and
// drops it when the ping is not answered within 20 s, so half-open
// connections from vanished clients do not pin streams forever.
var (
	keepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	keepaliveParams      = keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}
)

// validate requires every limit: a node without bounds is one client
// away from running out of memory.
func (l Limits) validate() error {
	switch {
	case l.MaxRecvMsgSize < 1024:
		return errors.New("--max-recv-msg-size must be at least 1024")
	case l.MaxConcurrentStreams < 1:
		return errors.New("--max-concurrent-streams must be at least 1")
	case l.MaxWatchers < 1:
		return errors.New("--max-watchers must be at least 1")
	case l.MaxConsumers < 1:
		return errors.New("--max-consumers must be at least 1")
	}
	return nil
}

func (l Limits) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepaliveEnforcement),
		grpc.KeepaliveParams(keepaliveParams),
	}
	if l.MaxRecvMsgSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(l.MaxRecvMsgSize))
	}
	if l.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(l.MaxConcurrentStreams))
	}
	return opts
}
