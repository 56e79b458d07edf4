package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/internal/telemetry"
)

// callLogger logs one line per finished call, with its code, duration and
// caller, through grpc-ecosystem's logging middleware. The middleware
// builds the line's fields for every call (and times every message of a
// stream), whether or not the line is written. A successful call is
// logged at Info, so while the logger drops Info lines (--log-level warn
// or error) calls skip the middleware; the few that fail at a level the
// logger writes get the very line the middleware would write (fields,
// order and values).
type callLogger struct {
	log        *slog.Logger
	unaryFull  grpc.UnaryServerInterceptor
	streamFull grpc.StreamServerInterceptor
}

// successLevel is the level of a successful call's line (the middleware's
// DefaultServerCodeToLevel), the lowest of any call's line.
const successLevel = slog.Level(logging.LevelInfo)

func newCallLogger(log *slog.Logger) callLogger {
	callLog := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	opts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(traceIDField),
	}
	return callLogger{log: log, unaryFull: logging.UnaryServerInterceptor(callLog, opts...), streamFull: logging.StreamServerInterceptor(callLog, opts...)}
}

// traceIDField adds the call's trace id, when it has one, to its line.
func traceIDField(ctx context.Context) logging.Fields {
	if id := telemetry.TraceID(ctx); id != "" {
		return logging.Fields{"trace_id", id}
	}
	return nil
}

func (l callLogger) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if l.log.Enabled(ctx, successLevel) {
		return l.unaryFull(ctx, req, info, handler)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	if err != nil {
		l.failed(ctx, interceptors.NewServerCallMeta(info.FullMethod, nil, req), start, err)
	}
	return resp, err
}

func (l callLogger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if l.log.Enabled(ss.Context(), successLevel) {
		return l.streamFull(srv, ss, info, handler)
	}
	start := time.Now()
	err := handler(srv, ss)
	if err != nil {
		l.failed(ss.Context(), interceptors.NewServerCallMeta(info.FullMethod, info, nil), start, err)
	}
	return err
}

// failed writes a failed call's line, if the logger writes its level,
// with the fields of the middleware's line in the same order: the trace
// id, the call, the caller, the start and deadline, the order id of a
// unary request (logOrderID), the code and error, the duration.
func (l callLogger) failed(ctx context.Context, c interceptors.CallMeta, start time.Time, err error) {
	if errors.Is(err, io.EOF) {
		return // the middleware's code for io.EOF is OK
	}
	code := status.Code(err)
	lvl := slog.Level(logging.DefaultServerCodeToLevel(code))
	if !l.log.Enabled(ctx, lvl) {
		return
	}
	fields := traceIDField(ctx)
	fields = append(fields,
		logging.SystemTag[0], logging.SystemTag[1],
		logging.ComponentFieldKey, logging.KindServerFieldValue,
		logging.ServiceFieldKey, c.Service,
		logging.MethodFieldKey, c.Method,
		logging.MethodTypeFieldKey, string(c.Typ))
	if p, ok := peer.FromContext(ctx); ok {
		fields = append(fields, "peer.address", p.Addr.String())
	}
	fields = append(fields, "grpc.start_time", start.Format(time.RFC3339))
	if d, ok := ctx.Deadline(); ok {
		fields = append(fields, "grpc.request.deadline", d.Format(time.RFC3339))
	}
	if r, ok := c.ReqOrNil.(interface{ GetOrderId() string }); ok && r.GetOrderId() != "" {
		fields = append(fields, orderIDField, r.GetOrderId())
	}
	fields = append(fields, "grpc.code", code.String(), "grpc.error", fmt.Sprintf("%v", err))
	fields = append(fields, logging.DefaultDurationToFields(time.Since(start))...)
	l.log.Log(ctx, lvl, "finished call", fields...)
}
