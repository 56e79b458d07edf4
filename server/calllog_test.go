package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/server"
)

// recordedLines is a slog.Handler that keeps every record at or above its
// level.
type recordedLines struct {
	level slog.Level
	mu    sync.Mutex
	lines []slog.Record
}

func (h *recordedLines) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *recordedLines) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *recordedLines) WithGroup(string) slog.Handler                { return h }
func (h *recordedLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Clone())
	return nil
}

// byMethod returns the recorded lines as "level msg key=value ..." by
// gRPC method, with the values that differ from call to call (times,
// the client's port) replaced by their key.
func (h *recordedLines) byMethod() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for _, r := range h.lines {
		line, method := r.Level.String()+" "+r.Message, ""
		r.Attrs(func(a slog.Attr) bool {
			v := a.Value.String()
			switch a.Key {
			case "grpc.method":
				method = v
			case "grpc.start_time", "grpc.request.deadline", "grpc.time_ms", "peer.address":
				v = "<" + a.Key + ">"
			}
			line += " " + a.Key + "=" + v
			return true
		})
		out[method] = line
	}
	return out
}

// callOutcomes answers each RPC the call log test makes with a fixed
// outcome. GetOrder notes the log fields its call carries: the logging
// middleware builds them for every call it sees.
type callOutcomes struct {
	ordersv1.UnimplementedOrderServiceServer
	fields *logging.Fields
}

func (c callOutcomes) GetOrder(ctx context.Context, _ *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	*c.fields = logging.ExtractFields(ctx)
	return &ordersv1.GetOrderResponse{}, nil
}

func (callOutcomes) ApproveOrder(context.Context, *ordersv1.ApproveOrderRequest) (*ordersv1.ApproveOrderResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "order o-1 is approved already")
}

func (callOutcomes) WatchOrders(*ordersv1.WatchOrdersRequest, grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	return status.Error(codes.Unavailable, "shutting down")
}

// callLines serves callOutcomes with a logger at level, makes one call of
// each, and returns the lines logged and the log fields built for the
// successful call.
func callLines(t *testing.T, level slog.Level) (map[string]string, logging.Fields) {
	t.Helper()
	lines := &recordedLines{level: level}
	var fields logging.Fields
	gs, err := server.NewGRPCServer(callOutcomes{fields: &fields}, health.NewServer(), slog.New(lines), server.GRPCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ordersv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "o-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ApproveOrder(ctx, &ordersv1.ApproveOrderRequest{OrderId: "o-1"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ApproveOrder: %v, want FAILED_PRECONDITION", err)
	}
	stream, err := client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("WatchOrders: %v, want UNAVAILABLE", err)
	}
	gs.GracefulStop() // every handler, and so every log line, is done
	return lines.byMethod(), fields
}

// Below Info, calls skip the logging middleware's field building, yet a
// failed call logged at a level the logger writes gets the same line as
// through the middleware: same message, level, fields and order.
func TestCallLogLinesAreTheSameBelowTheLogLevel(t *testing.T) {
	t.Parallel()
	all, allFields := callLines(t, slog.LevelInfo) // through the middleware
	warn, warnFields := callLines(t, slog.LevelWarn)
	if _, ok := all["GetOrder"]; !ok || len(allFields) == 0 {
		t.Fatalf("at Info, the successful call has no line (%v) or no fields (%v)", all, allFields)
	}
	if line, ok := warn["GetOrder"]; ok || len(warnFields) != 0 {
		t.Fatalf("at Warn, the successful call was logged (%s) or its fields were built (%v)", line, warnFields)
	}
	for _, method := range []string{"ApproveOrder", "WatchOrders"} {
		if warn[method] != all[method] {
			t.Errorf("%s below Info:\n  %s\nthrough the middleware:\n  %s", method, warn[method], all[method])
		}
	}
	want := "WARN finished call protocol=grpc grpc.component=server grpc.service=orders.v1.OrderService grpc.method=ApproveOrder grpc.method_type=unary " +
		"peer.address=<peer.address> grpc.start_time=<grpc.start_time> grpc.request.deadline=<grpc.request.deadline> order_id=o-1 " +
		`grpc.code=FailedPrecondition grpc.error=rpc error: code = FailedPrecondition desc = order o-1 is approved already grpc.time_ms=<grpc.time_ms>`
	if got := warn["ApproveOrder"]; got != want {
		t.Errorf("ApproveOrder's line:\n  %s\nwant\n  %s", got, want)
	}
	if methods := slices.Sorted(maps.Keys(warn)); fmt.Sprint(methods) != "[ApproveOrder WatchOrders]" {
		t.Errorf("lines at Warn for %v, want ApproveOrder and WatchOrders", methods)
	}
}
