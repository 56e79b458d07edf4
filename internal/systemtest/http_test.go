package systemtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// httpProtocol is one way of calling the HTTP port with connect-go.
type httpProtocol struct {
	name string
	opts []connect.ClientOption
}

// httpProtocols are the protocols a browser or a script uses: Connect with
// JSON and with protobuf, and gRPC-Web. (gRPC on the HTTP port is
// tested on its own, with grpc-go.)
var httpProtocols = []httpProtocol{
	{"Connect JSON", []connect.ClientOption{connect.WithProtoJSON()}},
	{"Connect proto", nil},
	{"gRPC-Web", []connect.ClientOption{connect.WithGRPCWeb()}},
}

// httpOrders is an OrderService client over the HTTP port, one
// connect-go client per RPC (no generated connect code needed).
type httpOrders struct {
	create  *connect.Client[ordersv1.CreateOrderRequest, ordersv1.CreateOrderResponse]
	get     *connect.Client[ordersv1.GetOrderRequest, ordersv1.GetOrderResponse]
	history *connect.Client[ordersv1.GetOrderHistoryRequest, ordersv1.GetOrderHistoryResponse]
	watch   *connect.Client[ordersv1.WatchOrdersRequest, ordersv1.WatchOrdersResponse]
	consume *connect.Client[ordersv1.ConsumeOrdersRequest, ordersv1.ConsumeOrdersResponse]
	ack     *connect.Client[ordersv1.AckOrdersRequest, ordersv1.AckOrdersResponse]
	health  *connect.Client[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse]
}

func newHTTPOrders(hc connect.HTTPClient, base string, opts ...connect.ClientOption) *httpOrders {
	svc := base + "/" + ordersv1.OrderService_ServiceDesc.ServiceName + "/"
	return &httpOrders{
		create:  connect.NewClient[ordersv1.CreateOrderRequest, ordersv1.CreateOrderResponse](hc, svc+"CreateOrder", opts...),
		get:     connect.NewClient[ordersv1.GetOrderRequest, ordersv1.GetOrderResponse](hc, svc+"GetOrder", opts...),
		history: connect.NewClient[ordersv1.GetOrderHistoryRequest, ordersv1.GetOrderHistoryResponse](hc, svc+"GetOrderHistory", opts...),
		watch:   connect.NewClient[ordersv1.WatchOrdersRequest, ordersv1.WatchOrdersResponse](hc, svc+"WatchOrders", opts...),
		consume: connect.NewClient[ordersv1.ConsumeOrdersRequest, ordersv1.ConsumeOrdersResponse](hc, svc+"ConsumeOrders", opts...),
		ack:     connect.NewClient[ordersv1.AckOrdersRequest, ordersv1.AckOrdersResponse](hc, svc+"AckOrders", opts...),
		health:  connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, base+"/grpc.health.v1.Health/Check", opts...),
	}
}

// withToken is a request carrying a bearer token (none when token is "").
func withToken[T any](msg *T, token string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	return req
}

// firstOf opens a server stream and returns its first message, or the
// stream's error.
func firstOf[Req, Res any](ctx context.Context, c *connect.Client[Req, Res], req *connect.Request[Req]) (*Res, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.CallServerStream(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	if stream.Receive() {
		return stream.Msg(), nil
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("the stream ended without a message")
}

func newHTTPCreate(requestID string) *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{
		RequestId: requestID, CustomerId: "c", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "S", Quantity: 1, UnitPriceMinor: 100}},
	}
}

func wantCode(t *testing.T, what string, err error, want connect.Code) {
	t.Helper()
	switch {
	case want == 0 && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != 0 && connect.CodeOf(err) != want:
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// Over every HTTP protocol, each RPC group (write, read, watch, consume)
// refuses a call without a token (UNAUTHENTICATED) and one with a token
// lacking its permission (PERMISSION_DENIED), and serves the right token:
// the gRPC port's authentication applies unchanged. Health is public.
func TestHTTPPermissionsPerGroup(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens": [
		{"identity": "reader", "token": "reader-token", "permissions": ["read"]},
		{"identity": "writer", "token": "writer-token", "permissions": ["write"]},
		{"identity": "watcher", "token": "watcher-token", "permissions": ["watch"]},
		{"identity": "warehouse", "token": "warehouse-token", "permissions": ["consume:warehouse"]}
	]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false", "--auth-tokens-file", tokens)
	base := "http://" + ready.HTTPAddr.String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, p := range httpProtocols {
		t.Run(p.name, func(t *testing.T) {
			c := newHTTPOrders(http.DefaultClient, base, p.opts...)
			waitHTTPServing(t, c)
			id := strings.ReplaceAll(p.name, " ", "-")

			_, err := c.create.CallUnary(ctx, withToken(newHTTPCreate("create-"+id), ""))
			wantCode(t, "create without a token", err, connect.CodeUnauthenticated)
			_, err = c.create.CallUnary(ctx, withToken(newHTTPCreate("create-"+id), "bogus-token"))
			wantCode(t, "create with an unknown token", err, connect.CodeUnauthenticated)
			_, err = c.create.CallUnary(ctx, withToken(newHTTPCreate("create-"+id), "reader-token"))
			wantCode(t, "create with read permission", err, connect.CodePermissionDenied)
			created, err := c.create.CallUnary(ctx, withToken(newHTTPCreate("create-"+id), "writer-token"))
			if err != nil {
				t.Fatalf("create with write permission: %v", err)
			}
			orderID := created.Msg.GetOrder().GetOrderId()

			get := &ordersv1.GetOrderRequest{OrderId: orderID}
			_, err = c.get.CallUnary(ctx, withToken(get, ""))
			wantCode(t, "get without a token", err, connect.CodeUnauthenticated)
			_, err = c.get.CallUnary(ctx, withToken(get, "writer-token"))
			wantCode(t, "get with write permission", err, connect.CodePermissionDenied)
			got, err := c.get.CallUnary(ctx, withToken(get, "reader-token"))
			if err != nil || got.Msg.GetOrder().GetOrderId() != orderID {
				t.Fatalf("get with read permission: %v, %v", got, err)
			}
			hist := &ordersv1.GetOrderHistoryRequest{OrderId: orderID}
			_, err = firstOf(ctx, c.history, withToken(hist, "watcher-token"))
			wantCode(t, "history with watch permission", err, connect.CodePermissionDenied)
			ev, err := firstOf(ctx, c.history, withToken(hist, "reader-token"))
			if err != nil || ev.GetEvent().GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CREATED {
				t.Fatalf("history with read permission: %v, %v", ev, err)
			}

			watch := &ordersv1.WatchOrdersRequest{OrderId: orderID, Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}}
			_, err = firstOf(ctx, c.watch, withToken(watch, ""))
			wantCode(t, "watch without a token", err, connect.CodeUnauthenticated)
			_, err = firstOf(ctx, c.watch, withToken(watch, "reader-token"))
			wantCode(t, "watch with read permission", err, connect.CodePermissionDenied)
			w, err := firstOf(ctx, c.watch, withToken(watch, "watcher-token"))
			if err != nil || w.GetEvent().GetOrder().GetOrderId() != orderID {
				t.Fatalf("watch with watch permission: %v, %v", w, err)
			}

			consume := &ordersv1.ConsumeOrdersRequest{Consumer: "warehouse-" + id, MaxInFlight: 10}
			_, err = firstOf(ctx, c.consume, withToken(consume, "warehouse-token"))
			wantCode(t, "consume on another consumer", err, connect.CodePermissionDenied)
			consume.Consumer = "warehouse"
			_, err = firstOf(ctx, c.consume, withToken(consume, "writer-token"))
			wantCode(t, "consume with write permission", err, connect.CodePermissionDenied)
			d, err := firstOf(ctx, c.consume, withToken(consume, "warehouse-token"))
			if err != nil || d.GetAckToken() == "" {
				t.Fatalf("consume with consume permission: %v, %v", d, err)
			}
			acks := &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: d.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK}}}
			_, err = c.ack.CallUnary(ctx, withToken(acks, "reader-token"))
			wantCode(t, "ack with read permission", err, connect.CodePermissionDenied)
			res, err := c.ack.CallUnary(ctx, withToken(acks, "warehouse-token"))
			if err != nil || len(res.Msg.GetResults()) != 1 || !res.Msg.GetResults()[0].GetConfirmed() {
				t.Fatalf("ack with consume permission: %v, %v", res, err)
			}
		})
	}
}

// waitHTTPServing waits until the health service, over HTTP without a
// token, answers SERVING.
func waitHTTPServing(t *testing.T, c *httpOrders) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := c.health.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
		if err == nil && res.Msg.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health over HTTP is not SERVING: %v, %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Server streams work over Connect and gRPC-Web: a watch replays, says it
// caught up and then delivers a live event; a history ends after the
// order's events.
func TestHTTPServerStreams(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir())
	base := "http://" + ready.HTTPAddr.String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range httpProtocols {
		t.Run(p.name, func(t *testing.T) {
			c := newHTTPOrders(http.DefaultClient, base, p.opts...)
			waitHTTPServing(t, c)
			first, err := c.create.CallUnary(ctx, connect.NewRequest(newHTTPCreate("")))
			if err != nil {
				t.Fatal(err)
			}
			customer := first.Msg.GetOrder().GetCustomerId()
			watchCtx, stopWatch := context.WithCancel(ctx)
			defer stopWatch()
			stream, err := c.watch.CallServerStream(watchCtx, connect.NewRequest(&ordersv1.WatchOrdersRequest{
				OrderId: first.Msg.GetOrder().GetOrderId(), CustomerId: customer,
				Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true},
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			var (
				statuses []ordersv1.OrderStatus
				caughtUp bool
			)
			// created (replayed), caught up, then approved by the review worker (live or replayed).
			for len(statuses) < 2 || !caughtUp {
				if !stream.Receive() {
					t.Fatalf("watch ended after %v (caught up: %v): %v", statuses, caughtUp, stream.Err())
				}
				msg := stream.Msg()
				caughtUp = caughtUp || msg.GetCaughtUp()
				if ev := msg.GetEvent(); ev != nil {
					statuses = append(statuses, ev.GetOrder().GetStatus())
				}
			}
			if statuses[0] != ordersv1.OrderStatus_ORDER_STATUS_CREATED || statuses[1] != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
				t.Errorf("watched %v, want created then approved", statuses)
			}

			hist, err := c.history.CallServerStream(ctx, connect.NewRequest(&ordersv1.GetOrderHistoryRequest{OrderId: first.Msg.GetOrder().GetOrderId()}))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for hist.Receive() {
				n++
			}
			if err := hist.Err(); err != nil || n != 2 {
				t.Errorf("history: %d events, %v; want 2 and a clean end", n, err)
			}
			hist.Close()
		})
	}
}

// Native gRPC clients can use the HTTP port too (h2c), and errors keep
// their codes.
func TestGRPCOnTheHTTPPort(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false")
	conn, err := grpc.NewClient(ready.HTTPAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, healthpb.NewHealthClient(conn))
	client := ordersv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.CreateOrder(ctx, newHTTPCreate("grpc-on-http"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: res.GetOrder().GetOrderId() + ".x"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad order id: %v, want INVALID_ARGUMENT", err)
	}
}

// The gRPC port's limits apply over HTTP: a request over
// --max-recv-msg-size is refused with RESOURCE_EXHAUSTED in protobuf and
// in JSON, and --rate-limit holds per caller.
func TestHTTPLimits(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false", "--max-recv-msg-size", "65536", "--rate-limit", "1", "--rate-burst", "30")
	base := "http://" + ready.HTTPAddr.String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := newHTTPCreate("")
	big.Items[0].Sku = strings.Repeat("x", 100_000)
	for _, p := range httpProtocols {
		c := newHTTPOrders(http.DefaultClient, base, p.opts...)
		_, err := c.create.CallUnary(ctx, connect.NewRequest(big))
		wantCode(t, p.name+": an oversized create", err, connect.CodeResourceExhausted)
		_, err = c.create.CallUnary(ctx, connect.NewRequest(newHTTPCreate("")))
		wantCode(t, p.name+": a normal create after it", err, 0)
	}
	// The burst (30) is spent within a second by these calls, at 1 a second.
	c := newHTTPOrders(http.DefaultClient, base, connect.WithProtoJSON())
	var err error
	for range 40 {
		if _, err = c.get.CallUnary(ctx, connect.NewRequest(&ordersv1.GetOrderRequest{OrderId: "none"})); connect.CodeOf(err) != connect.CodeNotFound {
			break
		}
	}
	wantCode(t, "calls past --rate-burst", err, connect.CodeResourceExhausted)
}

// Calls over HTTP are counted by the gRPC server metrics, with the
// method's labels.
func TestHTTPCallsAreCounted(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false")
	c := newHTTPOrders(http.DefaultClient, "http://"+ready.HTTPAddr.String(), connect.WithProtoJSON())
	waitHTTPServing(t, c)
	metrics := "http://" + ready.MetricsAddr.String()
	series := `grpc_server_handled_total{grpc_code="OK",grpc_method="CreateOrder",grpc_service="orders.v1.OrderService",grpc_type="unary"}`
	before := scrape(t, metrics, series)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := c.create.CallUnary(ctx, connect.NewRequest(newHTTPCreate(""))); err != nil {
			t.Fatal(err)
		}
	}
	if after := scrape(t, metrics, series); after-before != 3 {
		t.Errorf("%s moved by %v after 3 creates over HTTP, want 3", series, after-before)
	}
}

// With --tls-cert and --tls-client-ca the HTTP port serves HTTPS with the
// gRPC port's certificate, and refuses clients without a certificate
// from the client CA, and plaintext.
func TestHTTPUsesTheGRPCPortsTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA := testsupport.NewCA(t, "server CA"), testsupport.NewCA(t, "client CA")
	serverCert, serverKey := issuePEM(t, serverCA, "ordersd", x509.ExtKeyUsageServerAuth)
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false",
		"--tls-cert", writeFile(t, dir, "server.pem", serverCert),
		"--tls-key", writeFile(t, dir, "server-key.pem", serverKey),
		"--tls-client-ca", writeFile(t, dir, "client-ca.pem", clientCA.PEM))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.PEM)
	certPEM, keyPEM := issuePEM(t, clientCA, "client", x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := func(hc *http.Client, scheme string) error {
		c := newHTTPOrders(hc, scheme+"://"+ready.HTTPAddr.String(), connect.WithProtoJSON())
		_, err := c.health.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
		return err
	}
	if err := check(client(pair), "https"); err != nil {
		t.Fatalf("HTTPS with a client certificate: %v", err)
	}
	if err := check(client(), "https"); err == nil {
		t.Error("HTTPS without a client certificate got through")
	}
	if err := check(http.DefaultClient, "http"); err == nil {
		t.Error("plaintext HTTP got through a TLS port")
	}
}

// Browsers from an origin in --http-cors-origins get the preflight and
// response headers connect's CORS guide lists; other origins get none.
func TestHTTPCORS(t *testing.T) {
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false", "--http-cors-origins", "https://app.example.com")
	url := "http://" + ready.HTTPAddr.String() + "/orders.v1.OrderService/GetOrder"
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, url, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,connect-protocol-version,authorization")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight("https://app.example.com")
	if res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight from an allowed origin: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example.com"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin was allowed: %v", res.Header)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"order_id": "none"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://app.example.com")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
		t.Errorf("a call from an allowed origin: %d %v", res.StatusCode, res.Header)
	}
}

// Shutdown ends a watch over HTTP with UNAVAILABLE, drains the HTTP port
// and returns nil in time.
func TestHTTPShutdownEndsStreams(t *testing.T) {
	ready, stop := runOrdersd(t, t.TempDir(), "--review=false", "--shutdown-delay", "0s")
	c := newHTTPOrders(http.DefaultClient, "http://"+ready.HTTPAddr.String())
	waitHTTPServing(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.watch.CallServerStream(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() && !stream.Msg().GetCaughtUp() {
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	for stream.Receive() {
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
		t.Errorf("the watch ended with %v, want UNAVAILABLE", stream.Err())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v with a watch open over HTTP", took)
	}
}

// A call over HTTP is traced as on the gRPC port: its span continues the
// caller's W3C trace context (the traceparent header).
func TestHTTPCallsAreTraced(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(previous); _ = tp.Shutdown(context.Background()) })

	ready, _ := runOrdersd(t, t.TempDir(), "--review=false")
	c := newHTTPOrders(http.DefaultClient, "http://"+ready.HTTPAddr.String(), connect.WithProtoJSON())
	waitHTTPServing(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req := connect.NewRequest(newHTTPCreate("traced-over-http"))
	req.Header().Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	if _, err := c.create.CallUnary(ctx, req); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var call sdktrace.ReadOnlySpan
	for call == nil {
		if call = find(recorder.Ended(), "orders.v1.OrderService/CreateOrder"); call == nil && time.Now().After(deadline) {
			t.Fatalf("no CreateOrder span; spans: %v", names(recorder.Ended()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if call.SpanContext().TraceID().String() != traceID || call.Parent().SpanID().String() != parentID {
		t.Errorf("the CreateOrder span is in trace %s under %s, want trace %s under the caller's span %s",
			call.SpanContext().TraceID(), call.Parent().SpanID(), traceID, parentID)
	}
}
