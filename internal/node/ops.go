package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersserver "github.com/ordersd/ordersd/server"
)

// opsServer is the HTTP endpoint for operators, apart from the gRPC port:
// /metrics (Prometheus), /livez (the process answers) and /readyz
// (JetStream is reachable and the stream ORDERS exists, and with --xds the
// control plane has configured the listener: the same state as the gRPC
// health service).
type opsServer struct {
	srv *http.Server
	lis net.Listener
}

// newOpsServer serves on lis, once serve is called.
func newOpsServer(lis net.Listener, reg *prometheus.Registry, hs *health.Server) *opsServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		res, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not ready: JetStream unreachable, stream ORDERS missing, or (--xds) the listener not configured by the control plane yet", http.StatusServiceUnavailable)
			return
		}
		if dl, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{Service: ordersserver.DeadLettersHealthService}); err != nil || dl.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			_, _ = w.Write([]byte("ready\ndead letters: not recorded (another stream holds their subjects: see the log, and FAILED_PRECONDITION of the dead-letter calls)\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return &opsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, lis: lis}
}

func (o *opsServer) serve(log *slog.Logger) error {
	log.Info("serving metrics and probes", "addr", o.lis.Addr().String(), "paths", "/metrics /livez /readyz")
	if err := o.srv.Serve(o.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (o *opsServer) stop(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = o.srv.Shutdown(ctx)
}
