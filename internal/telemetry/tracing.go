// Package telemetry sets up OpenTelemetry tracing and carries trace
// context through NATS message headers, so that one trace follows an order
// from the gRPC call that wrote it to the workers and watchers that read
// it.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracer is ordersd's tracer, from the global provider (a no-op one unless
// tracing is set up).
func Tracer() trace.Tracer { return otel.Tracer("github.com/ordersd/ordersd") }

// ExportConfigured reports whether the standard OTEL_* environment asks
// for trace export: an OTLP endpoint is set and OTEL_TRACES_EXPORTER is not
// "none". Tracing is off by default.
func ExportConfigured() bool {
	if strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") || strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the W3C trace context propagator and, when the
// environment asks for it, a tracer provider exporting over OTLP (gRPC,
// or HTTP when OTEL_EXPORTER_OTLP_PROTOCOL says http/protobuf). The
// exporter reads the rest of its settings (endpoint, headers, TLS) from
// the standard OTEL_EXPORTER_OTLP_* variables. The returned function
// flushes and stops it.
func Setup(ctx context.Context, version string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !ExportConfigured() {
		return func(context.Context) error { return nil }, nil
	}
	var (
		exporter sdktrace.SpanExporter
		err      error
	)
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if strings.HasPrefix(protocol, "http") {
		exporter, err = otlptracehttp.New(ctx)
	} else {
		exporter, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName("ordersd"), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, err
	}
	res, err = resource.Merge(res, envResource(ctx))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// envResource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func envResource(ctx context.Context) *resource.Resource {
	res, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return resource.Empty()
	}
	return res
}

// Inject writes the trace context of ctx into NATS message headers.
func Inject(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx carrying the trace context found in NATS headers.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
}

// TraceID is the trace id of ctx's span, for log lines ("" when none).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
