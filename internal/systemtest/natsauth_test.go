package systemtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// ordersdWorks starts ordersd with flags and checks that an order can be
// created and read back through it.
func ordersdWorks(t *testing.T, flags ...string) {
	t.Helper()
	client, health, _ := startOrdersd(t, t.TempDir(), append([]string{"--review=false"}, flags...)...)
	waitServing(t, health)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", CurrencyCode: "EUR", Items: []*ordersv1.LineItem{{Sku: "s", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: res.GetOrder().GetOrderId()}); err != nil {
		t.Fatal(err)
	}
}

// ordersd connects to NATS deployments that require credentials or TLS.
func TestNATSWithCredentials(t *testing.T) {
	t.Run("user and password", func(t *testing.T) {
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) { o.Username, o.Password = "ordersd", "s3cret" })
		ordersdWorks(t, "--nats-url", ns.ClientURL(), "--ack-token-key-file", testsupport.AckKeyFile(t), "--nats-user", "ordersd", "--nats-password", "s3cret")
	})
	t.Run("token", func(t *testing.T) {
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) { o.Authorization = "t0ken" })
		ordersdWorks(t, "--nats-url", ns.ClientURL(), "--ack-token-key-file", testsupport.AckKeyFile(t), "--nats-token", "t0ken")
	})
	t.Run("nkey", func(t *testing.T) {
		user, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := user.PublicKey()
		seed, _ := user.Seed()
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) { o.Nkeys = []*natsserver.NkeyUser{{Nkey: pub}} })
		ordersdWorks(t, "--nats-url", ns.ClientURL(), "--ack-token-key-file", testsupport.AckKeyFile(t), "--nats-nkey", writeFile(t, t.TempDir(), "user.nk", seed))
	})
	t.Run("TLS", func(t *testing.T) {
		ca := testsupport.NewCA(t, "NATS CA")
		certPEM, keyPEM := issuePEM(t, ca, "nats", x509.ExtKeyUsageServerAuth)
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) {
			o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
			o.TLS, o.Username, o.Password = true, "ordersd", "s3cret"
		})
		url := "tls://127.0.0.1:" + strconv.Itoa(ns.Addr().(*net.TCPAddr).Port)
		ordersdWorks(t, "--nats-url", url, "--ack-token-key-file", testsupport.AckKeyFile(t), "--nats-ca", writeFile(t, t.TempDir(), "ca.pem", ca.PEM), "--nats-user", "ordersd", "--nats-password", "s3cret")
	})
	t.Run("wrong password", func(t *testing.T) {
		ns := testsupport.StartNATS(t, func(o *natsserver.Options) { o.Username, o.Password = "ordersd", "s3cret" })
		client, _, _ := startOrdersd(t, t.TempDir(), "--review=false", "--nats-url", ns.ClientURL(), "--ack-token-key-file", testsupport.AckKeyFile(t), "--nats-user", "ordersd", "--nats-password", "wrong")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "x"}); status.Code(err) != codes.Unavailable {
			t.Fatalf("a call without a NATS connection: %v, want UNAVAILABLE", err)
		}
	})
}

// The embedded NATS server opens a port only when asked, and then lets in
// only clients with the credentials.
func TestEmbeddedNATSListener(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, health, _ := startOrdersd(t, t.TempDir(), "--review=false", "--nats-listen", addr, "--nats-listen-user", "admin", "--nats-listen-password", "pw")
	waitServing(t, health)

	if nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo("admin", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "ORDERS"); err != nil {
		t.Fatalf("stream ORDERS through the listener: %v", err)
	}
}
