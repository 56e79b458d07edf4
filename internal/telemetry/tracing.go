// Package telemetry sets up OpenTelemetry tracing and carries trace
// context through NATS message headers, so that one trace follows an order
// from the gRPC call that wrote it to the workers and watchers that read
// it.
package telemetry

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
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
// for trace export: an OTLP endpoint or an exporter (OTEL_TRACES_EXPORTER)
// is set, the exporter is not "none" and the SDK is not disabled. Tracing
// is off by default, so a node without a collector sends nothing.
func ExportConfigured() bool {
	exporter := os.Getenv("OTEL_TRACES_EXPORTER")
	if strings.EqualFold(exporter, "none") || strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return exporter != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the W3C trace context propagator and, when the
// environment asks for it (ExportConfigured), a tracer provider with the
// exporter that the standard variables name (spanExporter). The returned
// function flushes and stops it.
func Setup(ctx context.Context, version string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !ExportConfigured() {
		return func(context.Context) error { return nil }, nil
	}
	exporter, err := spanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("trace exporter (OTEL_* environment): %w", err)
	}
	// Schemaless: the SDK's default resource carries the schema URL of the
	// SDK's own semconv version, and merging two different ones fails.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
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

// spanExporter is the exporter that OTEL_TRACES_EXPORTER names, as
// OpenTelemetry's environment specification says: "otlp" (the default)
// over the protocol of OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf" (the default) or "grpc",
// with the endpoint, headers and TLS of the other OTEL_EXPORTER_OTLP_*
// variables, which the exporters read; or "console", standard output.
// (contrib's autoexport does the same, but brings the metric and log
// exporters and SDKs into the binary with it, which ordersd does not use.)
func spanExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch name := cmp.Or(os.Getenv("OTEL_TRACES_EXPORTER"), "otlp"); name {
	case "otlp":
		switch protocol := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"); protocol {
		case "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", protocol)
		}
	case "console":
		return stdouttrace.New()
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp, console or none", name)
	}
}

// envResource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func envResource(ctx context.Context) *resource.Resource {
	res, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return resource.Empty()
	}
	return res
}

// eventPropagator is what travels with events: the W3C trace context
// (traceparent, tracestate) and never baggage. Events are kept for ever
// and read by every watcher; baggage is whatever a client chose to send
// (user ids, tenant names), meant for one request, not for the record.
var eventPropagator = propagation.TraceContext{}

// Inject writes the trace context of ctx into NATS message headers:
// traceparent and tracestate only.
func Inject(ctx context.Context, h nats.Header) {
	eventPropagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx carrying the trace context found in NATS headers.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return eventPropagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// TraceID is the trace id of ctx's span, for log lines ("" when none).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
