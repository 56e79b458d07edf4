package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

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

// healthService is grpc-go's health server whose Watch streams end, with
// UNAVAILABLE, once stopping is done. grpc-go's own end only with their
// client, so a client that checks health by watching it (grpc-go's
// client-side health checking) would hold a graceful stop until its
// timeout. By then the watch has already sent NOT_SERVING.
type healthService struct {
	*health.Server
	stopping context.Context
}

func endingWatches(hs *health.Server, stopping context.Context) healthpb.HealthServer {
	if stopping == nil {
		return hs
	}
	return healthService{Server: hs, stopping: stopping}
}

// Watch implements healthpb.HealthServer.
func (h healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stopping, cancel)()
	err := h.Server.Watch(req, watchStream{Health_WatchServer: stream, ctx: ctx})
	if h.stopping.Err() != nil && stream.Context().Err() == nil {
		return status.Error(codes.Unavailable, "ordersd is shutting down: watch the health of another node")
	}
	return err
}

// watchStream is a Watch stream with a context that also ends on shutdown.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (s watchStream) Context() context.Context { return s.ctx }

// DeadLettersHealthService is the health service name that tells whether
// dead letters are recorded: SERVING while they are, NOT_SERVING while
// they cannot be (another stream holds their subjects; the log and the
// dead-letter calls say why) or the node is not ready. The node's own
// health ("" and orders.v1.OrderService) does not depend on it.
const DeadLettersHealthService = "ordersd.DeadLetters"

// SetDeadLettersHealth sets the status of DeadLettersHealthService.
func SetDeadLettersHealth(hs *health.Server, recorded bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if recorded {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus(DeadLettersHealthService, st)
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
// It also checks at once on every value from recheck (nil: never), for
// readiness that depends on more than NATS (an xDS listener's configuration).
// When ctx ends every service is marked NOT_SERVING, for load balancers to
// stop sending calls before the server stops.
func WatchHealth(ctx context.Context, hs *health.Server, nc *nats.Conn, ready func(context.Context) error, recheck <-chan struct{}, interval time.Duration, log *slog.Logger, m *metrics.Metrics) {
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
				log.Warn("health: NOT_SERVING", "err", err)
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
		case <-recheck:
			check()
		case <-tick.C:
			check()
		}
	}
}
