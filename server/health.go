package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/metrics"
)

// NewHealthServer returns the standard gRPC health service, NOT_SERVING
// until WatchHealth has seen JetStream ready.
func NewHealthServer() *health.Server {
	hs := health.NewServer()
	setServing(hs, false)
	return hs
}

func setServing(hs *health.Server, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(ordersv1.OrderService_ServiceDesc.ServiceName, st)
}

// WatchHealth keeps hs in step with JetStream until ctx ends: SERVING while
// ready succeeds (NATS connected, stream ORDERS present), NOT_SERVING
// otherwise. It checks every interval, and at once whenever the NATS
// connection changes state, so a disconnect shows within milliseconds.
// When ctx ends every service is marked NOT_SERVING, for load balancers to
// stop sending calls before the server stops.
func WatchHealth(ctx context.Context, hs *health.Server, nc *nats.Conn, ready func(context.Context) error, interval time.Duration, log *slog.Logger, m *metrics.Metrics) {
	changes := nc.StatusChanged()
	defer nc.RemoveStatusListener(changes)
	tick := time.NewTicker(interval)
	defer tick.Stop()

	serving := false
	check := func() {
		err := ready(ctx)
		if ctx.Err() != nil {
			return
		}
		m.State(nc.IsConnected(), err == nil)
		if now := err == nil; now != serving {
			serving = now
			setServing(hs, serving)
			if serving {
				log.Info("health: SERVING, JetStream ready")
			} else {
				log.Warn("health: NOT_SERVING, JetStream not ready", "err", err)
			}
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return
		case <-changes:
			check()
		case <-tick.C:
			check()
		}
	}
}
