package systemtest

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// monitorID is the SPIFFE ID of the workload the rotation tests call as.
const monitorID = "spiffe://example.org/ns/shop/sa/monitor"

// mtlsClient connects to addr trusting serverCA and showing pair.
func mtlsClient(t *testing.T, addr string, serverCA *testsupport.CA, pair testsupport.Pair) ordersv1.OrderServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair.TLS(t)}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ordersv1.NewOrderServiceClient(conn)
}

// getOrderCode is the code of one GetOrder on a fresh connection: NotFound
// when the connection and the caller's identity were accepted.
func getOrderCode(t *testing.T, addr string, serverCA *testsupport.CA, pair testsupport.Pair) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := mtlsClient(t, addr, serverCA, pair).GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "absent"})
	return status.Code(err)
}

// Mesh workloads call with their certificate alone (a SPIFFE ID granted
// in the tokens file). The server certificate and the client CA bundle
// are rotated on disk while a WatchOrders stream is open: new connections
// get the new ones, a broken file is refused and the one in use kept, and
// the open stream goes on receiving events throughout.
func TestCertificatesRotateWhileAWatchIsOpen(t *testing.T) {
	dir := t.TempDir()
	serverCA1, serverCA2 := testsupport.NewCA(t, "server CA 1"), testsupport.NewCA(t, "server CA 2")
	clientCA1, clientCA2 := testsupport.NewCA(t, "mesh CA 1"), testsupport.NewCA(t, "mesh CA 2")
	certFile, keyFile := serverCA1.Issue(t, testsupport.Leaf{CommonName: "ordersd"}).Write(t, dir, "server")
	clientCAFile := clientCA1.WriteCA(t, dir, "client-ca.crt")
	tokens := testsupport.WriteFile(t, dir, "tokens.json", []byte(`{"tokens": [],
		"certificates": [{"identity": "`+monitorID+`", "permissions": ["read", "write", "watch"]}]}`))
	ready, _ := runOrdersd(t, t.TempDir(), "--review=false", "--tls-cert", certFile, "--tls-key", keyFile,
		"--tls-client-ca", clientCAFile, "--auth-tokens-file", tokens)
	addr := ready.GRPCAddr.String()
	monitor1 := clientCA1.Issue(t, testsupport.Leaf{URIs: []string{monitorID}})
	monitor2 := clientCA2.Issue(t, testsupport.Leaf{URIs: []string{monitorID}})

	// Identities from certificates: granted, and not.
	if code := getOrderCode(t, addr, serverCA1, clientCA1.Issue(t, testsupport.Leaf{URIs: []string{"spiffe://example.org/ns/shop/sa/stranger"}})); code != codes.PermissionDenied {
		t.Fatalf("an ungranted SPIFFE ID: %v, want PERMISSION_DENIED", code)
	}
	client := mtlsClient(t, addr, serverCA1, monitor1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// From the start of the stream: no event is missed while the watch sets up.
	watch, err := client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 16)
	go func() {
		for {
			res, err := watch.Recv()
			if err != nil {
				close(events)
				return
			}
			if e := res.GetEvent(); e != nil {
				events <- e.GetOrder().GetOrderId()
			}
		}
	}()
	seen := func(how string, client ordersv1.OrderServiceClient) {
		t.Helper()
		res, err := client.CreateOrder(ctx, newClusterOrder(""))
		if err != nil {
			t.Fatalf("%s: create: %v", how, err)
		}
		for {
			select {
			case id, ok := <-events:
				if !ok {
					t.Fatalf("%s: the watch stream ended", how)
				}
				if id == res.GetOrder().GetOrderId() {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the open watch did not see order %s", how, res.GetOrder().GetOrderId())
			}
		}
	}
	seen("before any rotation", client)

	// The server certificate, from another CA: key first, then the
	// certificate (in between, the pair does not match and is refused).
	rotated := serverCA2.Issue(t, testsupport.Leaf{CommonName: "ordersd"})
	testsupport.ReplaceFile(t, keyFile, rotated.KeyPEM)
	testsupport.ReplaceFile(t, certFile, rotated.CertPEM)
	if !waitFor(10*time.Second, func() bool { return getOrderCode(t, addr, serverCA2, monitor1) == codes.NotFound }) {
		t.Fatal("new connections do not get the rotated server certificate")
	}
	seen("after the server certificate rotated", mtlsClient(t, addr, serverCA2, monitor1))

	// The client CA bundle: the mesh moves to a new CA.
	testsupport.ReplaceFile(t, clientCAFile, clientCA2.PEM)
	if !waitFor(10*time.Second, func() bool { return getOrderCode(t, addr, serverCA2, monitor2) == codes.NotFound }) {
		t.Fatal("a certificate of the new client CA is refused")
	}
	if code := getOrderCode(t, addr, serverCA2, monitor1); code != codes.Unavailable {
		t.Fatalf("a certificate of the removed client CA: %v, want the handshake refused (UNAVAILABLE)", code)
	}

	// A broken certificate file is refused: the one in use stays.
	testsupport.ReplaceFile(t, certFile, []byte("not a certificate"))
	time.Sleep(time.Second) // the watcher has read it by now
	if code := getOrderCode(t, addr, serverCA2, monitor2); code != codes.NotFound {
		t.Fatalf("after a broken certificate file: %v, want the certificate in use kept", code)
	}
	seen("after every rotation", mtlsClient(t, addr, serverCA2, monitor2))
}

// SIGHUP reloads certificates that changed where no file watch sees it:
// here the certificate directory is a symlink swapped to another
// directory. Without a SIGHUP handler the signal would end the process.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := testsupport.NewCA(t, "server CA 1"), testsupport.NewCA(t, "server CA 2")
	clientCA := testsupport.NewCA(t, "mesh CA")
	gen1, gen2 := filepath.Join(dir, "gen1"), filepath.Join(dir, "gen2")
	for gen, ca := range map[string]*testsupport.CA{gen1: ca1, gen2: ca2} {
		if err := os.Mkdir(gen, 0o700); err != nil {
			t.Fatal(err)
		}
		ca.Issue(t, testsupport.Leaf{CommonName: "ordersd"}).Write(t, gen, "server")
		clientCA.WriteCA(t, gen, "client-ca.crt")
	}
	current := filepath.Join(dir, "current")
	if err := os.Symlink(gen1, current); err != nil {
		t.Fatal(err)
	}
	// Elsewhere: a change in any watched directory reloads everything.
	tokens := testsupport.WriteFile(t, t.TempDir(), "tokens.json", []byte(`{"tokens": [],
		"certificates": [{"identity": "`+monitorID+`", "permissions": ["read"]}]}`))
	child := spawnChild(t, t.TempDir(), "--tls-cert", filepath.Join(current, "server.crt"), "--tls-key", filepath.Join(current, "server.key"),
		"--tls-client-ca", filepath.Join(current, "client-ca.crt"), "--auth-tokens-file", tokens)
	monitor := clientCA.Issue(t, testsupport.Leaf{URIs: []string{monitorID}})
	if !waitFor(30*time.Second, func() bool { return getOrderCode(t, child.addr, ca1, monitor) == codes.NotFound }) {
		t.Fatal("ordersd did not serve with its first certificate")
	}
	swapped := filepath.Join(dir, "current.new")
	if err := os.Symlink(gen2, swapped); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(swapped, current); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if code := getOrderCode(t, child.addr, ca2, monitor); code == codes.NotFound {
		t.Fatal("the new certificate was in use before SIGHUP: this test would not tell SIGHUP's work apart")
	}
	if err := child.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return getOrderCode(t, child.addr, ca2, monitor) == codes.NotFound }) {
		select {
		case err := <-child.exited:
			child.exited <- err // for the cleanup
			t.Fatalf("ordersd exited on SIGHUP: %v", err)
		default:
		}
		t.Fatal("after SIGHUP, new connections do not get the new certificate")
	}
}
