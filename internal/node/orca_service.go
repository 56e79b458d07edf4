package node

import (
	"context"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	v3orcaservicegrpc "github.com/cncf/xds/go/xds/service/orca/v3"
	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/status"
)

// orcaService serves out-of-band ORCA load reports (xds.service.orca.v3
// OpenRcaService), as grpc-go's orca.Register does, with two differences:
// its shortest interval is the operator's (--orca-min-interval) where
// grpc-go's cannot go below 30s outside its own tests, and its streams end
// when the node shuts down, so that they do not hold a graceful stop
// (grpc-go's end only with their client).
type orcaService struct {
	v3orcaservicegrpc.UnimplementedOpenRcaServiceServer
	load     *loadReporter
	stopping context.Context
}

// StreamCoreMetrics implements v3orcaservicegrpc.OpenRcaServiceServer: a
// report at once, then one every interval the client asks for, or the
// minimum.
func (s *orcaService) StreamCoreMetrics(req *v3orcaservicepb.OrcaLoadReportRequest, stream v3orcaservicegrpc.OpenRcaService_StreamCoreMetricsServer) error {
	interval := max(req.GetReportInterval().AsDuration(), s.load.opts.MinInterval)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := stream.Send(loadReportProto(s.load.recorder.ServerMetrics())); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-s.stopping.Done():
			return status.Error(codes.Unavailable, "ordersd is shutting down")
		case <-tick.C:
		}
	}
}

// loadReportProto is the report of m; fields m leaves unset (-1) are left
// out.
func loadReportProto(m *orca.ServerMetrics) *v3orcapb.OrcaLoadReport {
	r := &v3orcapb.OrcaLoadReport{Utilization: m.Utilization}
	set := func(v float64, field *float64) {
		if v >= 0 {
			*field = v
		}
	}
	set(m.CPUUtilization, &r.CpuUtilization)
	set(m.MemUtilization, &r.MemUtilization)
	set(m.AppUtilization, &r.ApplicationUtilization)
	set(m.QPS, &r.RpsFractional)
	set(m.EPS, &r.Eps)
	return r
}
