package telemetry

import (
	"cmp"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestExportConfiguredFollowsTheStandardEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set leaves tracing off", nil, false},
		{"an OTLP endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{"a traces endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"an exporter name turns it on", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"the exporter none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, false},
		{"a disabled SDK wins over an endpoint", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
				t.Setenv(k, tc.env[k])
			}
			if got := ExportConfigured(); got != tc.want {
				t.Errorf("ExportConfigured() = %v, want %v", got, tc.want)
			}
		})
	}
}

// Setup builds its exporter from the standard variables: here OTLP over
// HTTP, the default protocol, to a collector stand-in that decodes what it
// receives.
func TestSetupExportsSpansOverOTLPHTTP(t *testing.T) {
	for _, protocol := range []string{"", "http/protobuf"} {
		t.Run("protocol "+cmp.Or(protocol, "unset"), func(t *testing.T) { exportOverOTLPHTTP(t, protocol) })
	}
}

func exportOverOTLPHTTP(t *testing.T, protocol string) {
	received := make(chan *collectortrace.ExportTraceServiceRequest, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			t.Errorf("collector got %s %s (read error %v), not an OTLP trace export", r.Method, r.URL.Path, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		received <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
		body, _ = proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(body)
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
	t.Setenv("OTEL_SERVICE_NAME", "ordersd-under-test")
	previous := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(previous) })

	ctx := context.Background()
	stop, err := Setup(ctx, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("Setup installed %T, not the SDK's tracer provider", otel.GetTracerProvider())
	}
	_, span := Tracer().Start(ctx, "a traced call")
	span.End()
	if err := stop(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	select {
	case req := <-received:
		rs := req.GetResourceSpans()
		if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
			t.Fatalf("export holds %v, want the one span", req)
		}
		if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "a traced call" {
			t.Errorf("exported span %q, want %q", name, "a traced call")
		}
		attrs := map[string]string{}
		for _, kv := range rs[0].GetResource().GetAttributes() {
			attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		if attrs["service.name"] != "ordersd-under-test" || attrs["service.version"] != "v-test" {
			t.Errorf("resource attributes %v: want service.name from OTEL_SERVICE_NAME and the build's version", attrs)
		}
	default:
		t.Fatal("Setup's stop returned without exporting the span")
	}
}

// Without the environment asking for export, Setup installs no provider
// (spans cost nothing) but still carries trace context through headers.
func TestTraceContextTravelsInNATSHeaders(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	previous := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(previous) })
	if _, err := Setup(context.Background(), "v-test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Fatal("Setup installed an exporting provider with no OTEL_* environment")
	}

	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "publish")
	defer span.End()
	h := nats.Header{}
	Inject(ctx, h) // as an http.Header would: the key is canonical, Traceparent
	if h.Get("Traceparent") == "" {
		t.Fatalf("no traceparent header after Inject: %v", h)
	}
	got := Extract(context.Background(), h)
	if TraceID(got) != span.SpanContext().TraceID().String() {
		t.Errorf("extracted trace id %q, want %q", TraceID(got), span.SpanContext().TraceID())
	}
	// Baggage the client sent along stays out of the event's headers.
	member, _ := baggage.NewMember("user", "alice@example.org")
	bag, _ := baggage.New(member)
	h = nats.Header{}
	Inject(baggage.ContextWithBaggage(ctx, bag), h)
	if h.Get("Traceparent") == "" || h.Get("Baggage") != "" || len(h) > 2 {
		t.Errorf("headers %v: want traceparent (and tracestate) only, no baggage", h)
	}
	if id := TraceID(context.Background()); id != "" {
		t.Errorf("TraceID without a span = %q, want empty", id)
	}
}

// traceCollector is an OTLP collector stand-in over gRPC: it hands over
// every export it receives.
type traceCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	received chan *collectortrace.ExportTraceServiceRequest
}

func (c *traceCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.received <- req
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC instead, to the
// endpoint of the same variables.
func TestSetupExportsSpansOverOTLPGRPC(t *testing.T) {
	collector := &traceCollector{received: make(chan *collectortrace.ExportTraceServiceRequest, 10)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, collector)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	previous := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(previous) })

	ctx := context.Background()
	stop, err := Setup(ctx, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer().Start(ctx, "a call traced over gRPC")
	span.End()
	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-collector.received:
		if spans := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans(); len(spans) != 1 || spans[0].GetName() != "a call traced over gRPC" {
			t.Fatalf("export holds %v, want the one span", req)
		}
	default:
		t.Fatal("Setup's stop returned without exporting the span over gRPC")
	}
}

// An exporter or protocol the specification does not name is refused by
// name, instead of tracing going nowhere.
func TestSetupRefusesAnUnknownExporterOrProtocol(t *testing.T) {
	for _, tc := range []struct{ exporter, protocol, want string }{
		{"zipkin", "", `OTEL_TRACES_EXPORTER "zipkin"`},
		{"otlp", "http/json", `OTLP protocol "http/json"`},
		{"", "thrift", `OTLP protocol "thrift"`},
	} {
		t.Setenv("OTEL_TRACES_EXPORTER", tc.exporter)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
		if _, err := Setup(context.Background(), "v-test"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("exporter %q, protocol %q: %v; want an error naming %s", tc.exporter, tc.protocol, err, tc.want)
		}
	}
}
