package systemtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/eventstore"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// xdsNode is ordersd serving with --xds as a child process, and a client
// of it.
type xdsNode struct {
	*childOrdersd
	metricsAddr string
	listener    string // the name of its Listener resource
	health      healthpb.HealthClient
}

// startXDSNode runs ordersd with --xds as a child process under the
// control plane cp (named by GRPC_XDS_BOOTSTRAP_CONFIG, as an operator
// would), and waits until the node has asked cp for its listener. The
// listener is not served yet. Its log is kept from level info up.
func startXDSNode(t *testing.T, cp *testsupport.XDSControlPlane, bootstrap string, flags ...string) xdsNode {
	t.Helper()
	t.Setenv("GRPC_XDS_BOOTSTRAP_CONFIG", bootstrap) // for the child
	metricsAddr := freePorts(t, 1)[0]
	c := spawnChild(t, t.TempDir(), append([]string{"--xds", "--metrics-addr", metricsAddr, "--log-level", "info"}, flags...)...)
	n := xdsNode{childOrdersd: c, metricsAddr: metricsAddr, listener: fmt.Sprintf(testsupport.XDSListenerNameTemplate, c.addr),
		health: healthpb.NewHealthClient(c.conn)}
	eventually(t, 20*time.Second, "the node asked the control plane for its listener", func() error {
		if !cp.Requested(n.listener) {
			return fmt.Errorf("no request for %s", n.listener)
		}
		return nil
	})
	return n
}

// serve has the control plane serve the node's listener, shaped by o.
func (n xdsNode) serve(t *testing.T, cp *testsupport.XDSControlPlane, o testsupport.XDSListenerOptions) {
	t.Helper()
	l, err := testsupport.XDSServerListener(n.addr, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.SetListener(testsupport.Context(t, 5*time.Second), l); err != nil {
		t.Fatal(err)
	}
}

// waitServing waits until /readyz and the gRPC health service say the
// node serves. The client's connection may still be in its back-off from
// connections refused before; it is let in at its next attempt.
func (n xdsNode) waitServing(t *testing.T) {
	t.Helper()
	eventually(t, 20*time.Second, "/readyz once the listener was served", n.readyz)
	eventually(t, 20*time.Second, "health Check SERVING once the listener was served", func() error {
		res, err := n.health.Check(callCtx(t), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%v, %v", res.GetStatus(), err)
		}
		return nil
	})
}

// checkNotServing checks that the node, whose JetStream is ready, does
// not serve: /readyz 503, calls and health checks refused. Until JetStream
// is ready and health has checked since, a node that served without its
// listener's configuration would say NOT_SERVING too, and the checks would
// pass for the wrong reason: it waits for both. The stream is provisioned
// before the health watch starts (the log says when), and every health
// check sets ordersd_nats_connected.
func (n xdsNode) checkNotServing(t *testing.T, when string) {
	t.Helper()
	n.waitLog(t, 20*time.Second, "the streams ready", fmt.Sprintf("msg=%q", eventstore.StreamsReadyMessage))
	eventually(t, 20*time.Second, "a health check with NATS connected", func() error {
		if v := scrape(t, "http://"+n.metricsAddr, "ordersd_nats_connected"); v != 1 {
			return fmt.Errorf("ordersd_nats_connected %v", v)
		}
		return nil
	})
	if err := n.readyz(); err == nil {
		t.Fatalf("/readyz is 200 %s", when)
	}
	if _, err := n.client.CreateOrder(callCtx(t), createRequest()); status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateOrder %s: %v, want UNAVAILABLE", when, err)
	}
	if res, err := n.health.Check(callCtx(t), &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatalf("health Check %s answered %v", when, res.GetStatus())
	}
}

// readyz asks the node's /readyz: nil for 200.
func (n xdsNode) readyz() error {
	res, err := http.Get("http://" + n.metricsAddr + "/readyz")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", res.Status)
	}
	return nil
}

// eventually calls check until it returns nil, failing the test with its
// last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createRequest() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{CustomerId: "c1", CurrencyCode: "EUR",
		Items: []*ordersv1.LineItem{{Sku: "sku-1", Quantity: 1, UnitPriceMinor: 100}}}
}

// callCtx bounds one call; calls here never wait for a ready connection, so
// a node that does not serve fails them at once.
func callCtx(t *testing.T) context.Context {
	return testsupport.Context(t, 5*time.Second)
}

// A node with --xds serves nothing, and reports NOT_SERVING, until the
// control plane has sent its listener's configuration: it has asked for
// it, JetStream is ready, and still calls fail and /readyz says 503. Once
// the listener is served, health turns SERVING and calls work.
func TestXDSNodeServesOnlyOnceTheControlPlaneConfiguredItsListener(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	n := startXDSNode(t, cp, cp.Bootstrap())
	n.checkNotServing(t, "before the listener is configured")

	n.serve(t, cp, testsupport.XDSListenerOptions{})
	n.waitServing(t)
	created, err := n.client.CreateOrder(callCtx(t), createRequest())
	if err != nil {
		t.Fatalf("CreateOrder under the served configuration: %v", err)
	}
	got, err := n.client.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: created.GetOrder().GetOrderId()})
	if err != nil || got.GetOrder().GetOrderId() != created.GetOrder().GetOrderId() {
		t.Fatalf("GetOrder under the served configuration: %v, %v", got, err)
	}

	// The control plane withdraws the listener: the node stops serving and
	// says so.
	if err := cp.RemoveListener(callCtx(t), n.listener); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "/readyz 503 after the listener was withdrawn", func() error {
		if n.readyz() == nil {
			return fmt.Errorf("/readyz still 200")
		}
		return nil
	})
}

// denyPath is an RBAC policy that refuses calls to one method and allows
// every other.
func denyPath(path string) *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"deny-" + path: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: path}}},
			}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}
}

// allowAll is an RBAC policy that allows every call.
func allowAll() *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"anyone": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}
}

// An RBAC policy the control plane changes takes effect on the running
// node: CreateOrder is allowed, then denied once the new policy is
// served, while GetOrder, which the policy still allows, keeps working.
func TestXDSRBACChangeTakesEffectWithoutARestart(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	n := startXDSNode(t, cp, cp.Bootstrap())
	n.serve(t, cp, testsupport.XDSListenerOptions{RBAC: allowAll()})
	n.waitServing(t)
	created, err := n.client.CreateOrder(callCtx(t), createRequest())
	if err != nil {
		t.Fatalf("CreateOrder allowed by RBAC: %v", err)
	}

	n.serve(t, cp, testsupport.XDSListenerOptions{RBAC: denyPath(ordersv1.OrderService_CreateOrder_FullMethodName)})
	eventually(t, 20*time.Second, "CreateOrder denied by the new policy", func() error {
		_, err := n.client.CreateOrder(callCtx(t), createRequest())
		if status.Code(err) != codes.PermissionDenied {
			return fmt.Errorf("CreateOrder: %v, want PERMISSION_DENIED", err)
		}
		return nil
	})
	if _, err := n.client.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: created.GetOrder().GetOrderId()}); err != nil {
		t.Fatalf("GetOrder, which the new policy allows: %v", err)
	}
}

// The mesh's RBAC and ordersd's own permissions both apply: a call the
// mesh allows is still refused to a caller whose token lacks the
// permission, and a call the mesh denies is refused even to a caller whose
// token has every permission.
func TestXDSMeshPolicyAndOrdersdPermissionsBothApply(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens": [
		{"identity": "shop", "token": "shop-secret", "permissions": ["*"]},
		{"identity": "auditor", "token": "auditor-secret", "permissions": ["read"]}
	]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startXDSNode(t, cp, cp.Bootstrap(), "--auth-tokens-file", tokens)
	n.serve(t, cp, testsupport.XDSListenerOptions{RBAC: allowAll()})
	n.waitServing(t)
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(callCtx(t), "authorization", "Bearer "+token)
	}
	if _, err := n.client.CreateOrder(as("shop-secret"), createRequest()); err != nil {
		t.Fatalf("CreateOrder by shop, allowed by both: %v", err)
	}
	_, err := n.client.CreateOrder(as("auditor-secret"), createRequest())
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "write") {
		t.Fatalf("CreateOrder by auditor, allowed by the mesh: %v; want ordersd's PERMISSION_DENIED naming the permission", err)
	}

	n.serve(t, cp, testsupport.XDSListenerOptions{RBAC: denyPath(ordersv1.OrderService_CreateOrder_FullMethodName)})
	eventually(t, 20*time.Second, "CreateOrder by shop denied by the mesh", func() error {
		_, err := n.client.CreateOrder(as("shop-secret"), createRequest())
		if status.Code(err) != codes.PermissionDenied {
			return fmt.Errorf("CreateOrder: %v, want PERMISSION_DENIED", err)
		}
		return nil
	})
}

// A listener that the control plane sets to mutual TLS, with the
// certificates of the bootstrap's certificate provider (files a mesh's
// agent keeps fresh), lets in only clients with a certificate from the
// mesh's CA: a call with one works, a plaintext call or one without a
// client certificate is refused.
func TestXDSListenerWithMutualTLSFromTheCertificateProvider(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	dir := t.TempDir()
	ca := testsupport.NewCA(t, "mesh CA")
	serverCert, serverKey := issuePEM(t, ca, "ordersd", x509.ExtKeyUsageServerAuth)
	provider := testsupport.XDSCertificateProvider{Instance: "mesh-certs",
		CertFile: writeFile(t, dir, "cert.pem", serverCert), KeyFile: writeFile(t, dir, "key.pem", serverKey),
		CAFile: writeFile(t, dir, "ca.pem", ca.PEM)}
	n := startXDSNode(t, cp, cp.Bootstrap(provider))
	n.serve(t, cp, testsupport.XDSListenerOptions{MTLS: provider.Instance})
	eventually(t, 20*time.Second, "/readyz once the listener was served", n.readyz)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	clientCertPEM, clientKeyPEM := issuePEM(t, ca, "shop", x509.ExtKeyUsageClientAuth)
	clientCert, err := tls.X509KeyPair(clientCertPEM, clientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(creds credentials.TransportCredentials) ordersv1.OrderServiceClient {
		conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return ordersv1.NewOrderServiceClient(conn)
	}
	withCert := dial(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}))
	eventually(t, 20*time.Second, "CreateOrder with a client certificate", func() error {
		_, err := withCert.CreateOrder(callCtx(t), createRequest())
		return err
	})
	if _, err := n.client.CreateOrder(callCtx(t), createRequest()); err == nil {
		t.Error("a plaintext CreateOrder went through the mutual-TLS listener")
	}
	noCert := dial(credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	if _, err := noCert.CreateOrder(callCtx(t), createRequest()); err == nil {
		t.Error("a CreateOrder without a client certificate went through the mutual-TLS listener")
	}
}

// unusableListener is the node's Listener resource without its HTTP
// connection manager: gRPC's xDS server cannot serve it, and refuses it.
func (n xdsNode) unusableListener(t *testing.T) *listenerv3.Listener {
	t.Helper()
	l, err := testsupport.XDSServerListener(n.addr, testsupport.XDSListenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.FilterChains[0].Filters = nil
	return l
}

// A Listener the node cannot use is refused (NACKed, and the control
// plane is told why): as the first one, the node goes on not serving;
// once a usable one comes it serves, and a later unusable one is refused
// while the node goes on serving under the one it accepted.
func TestXDSListenerThatCannotBeUsedIsNACKed(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	n := startXDSNode(t, cp, cp.Bootstrap())
	nacked := func(before int) {
		t.Helper()
		eventually(t, 20*time.Second, "the node NACKed the listener", func() error {
			if got := cp.NACKs(n.listener); len(got) <= before {
				return fmt.Errorf("%d NACKs", len(got))
			}
			return nil
		})
		t.Logf("NACK: %s", cp.NACKs(n.listener)[before])
	}

	if err := cp.SetListener(callCtx(t), n.unusableListener(t)); err != nil {
		t.Fatal(err)
	}
	nacked(0)
	n.checkNotServing(t, "after its first listener was NACKed")

	n.serve(t, cp, testsupport.XDSListenerOptions{})
	n.waitServing(t)
	if _, err := n.client.CreateOrder(callCtx(t), createRequest()); err != nil {
		t.Fatalf("CreateOrder under a usable listener: %v", err)
	}

	before := len(cp.NACKs(n.listener))
	if err := cp.SetListener(callCtx(t), n.unusableListener(t)); err != nil {
		t.Fatal(err)
	}
	nacked(before)
	if err := n.readyz(); err != nil {
		t.Fatalf("after a NACKed update: %v, want the node serving under the listener it accepted", err)
	}
	if _, err := n.client.CreateOrder(callCtx(t), createRequest()); err != nil {
		t.Fatalf("CreateOrder after a NACKed update: %v", err)
	}
}

// Without server_listener_resource_name_template in the bootstrap, a node
// with --xds does not know which listener to ask for: it refuses to start,
// and says what is missing.
func TestXDSNodeWithoutListenerTemplateRefusesToStart(t *testing.T) {
	cp := testsupport.StartXDSControlPlane(t)
	var bootstrap map[string]any
	if err := json.Unmarshal([]byte(cp.Bootstrap()), &bootstrap); err != nil {
		t.Fatal(err)
	}
	delete(bootstrap, "server_listener_resource_name_template")
	b, err := json.Marshal(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRPC_XDS_BOOTSTRAP_CONFIG", string(b)) // for the child
	c := spawnChild(t, t.TempDir(), "--xds")
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		if err == nil {
			t.Fatal("ordersd --xds without a listener template exited 0")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ordersd --xds without a listener template still runs after 30s")
	}
	line := c.waitLog(t, 5*time.Second, "the error names the missing template", "server_listener_resource_name_template")
	t.Logf("ordersd said: %s", line)
}
