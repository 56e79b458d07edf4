package systemtest

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// With --nats-listen-cert, NATS clients of the embedded server must use
// TLS, and with --nats-listen-client-ca show a certificate of that CA.
func TestEmbeddedNATSListenerWithTLS(t *testing.T) {
	dir := t.TempDir()
	ca, otherCA := testsupport.NewCA(t, "NATS CA"), testsupport.NewCA(t, "another CA")
	cert, key := ca.Issue(t, testsupport.Leaf{CommonName: "nats"}).Write(t, dir, "nats")
	addr := freePorts(t, 1)[0]
	_, health, _ := startOrdersd(t, t.TempDir(), "--review=false", "--nats-listen", addr, "--nats-listen-token", "t",
		"--nats-listen-cert", cert, "--nats-listen-key", key, "--nats-listen-client-ca", ca.WriteCA(t, dir, "ca.crt"))
	waitServing(t, health) // ordersd's own connection is in process, without TLS

	connect := func(tlsCfg *tls.Config) (*nats.Conn, error) {
		opts := []nats.Option{nats.Token("t"), nats.MaxReconnects(0), nats.Timeout(3 * time.Second)}
		if tlsCfg != nil {
			opts = append(opts, nats.Secure(tlsCfg))
		}
		return nats.Connect("nats://"+addr, opts...)
	}
	for name, cfg := range map[string]*tls.Config{
		"plaintext":                        nil,
		"TLS without a client certificate": {RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		"a client certificate of another CA": {RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{otherCA.Issue(t, testsupport.Leaf{CommonName: "stranger"}).TLS(t)}},
	} {
		if nc, err := connect(cfg); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
	nc, err := connect(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{ca.Issue(t, testsupport.Leaf{CommonName: "inspector"}).TLS(t)}})
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "ORDERS"); err != nil {
		t.Fatalf("stream ORDERS through the TLS listener: %v", err)
	}
}

// The NATS client certificate (--nats-cert) is read again when its file
// changes: the connection up keeps running, and the next one shows the
// new certificate.
func TestNATSClientCertificateRotates(t *testing.T) {
	dir := t.TempDir()
	ca := testsupport.NewCA(t, "NATS CA")
	ns := testsupport.StartNATS(t, func(o *natsserver.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, testsupport.Leaf{CommonName: "nats"}).TLS(t)},
			ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		o.TLS, o.TLSVerify, o.Authorization = true, true, "t0ken"
	})
	cert, key := ca.Issue(t, testsupport.Leaf{CommonName: "ordersd-1"}).Write(t, dir, "client")
	url := "tls://127.0.0.1:" + strconv.Itoa(ns.Addr().(*net.TCPAddr).Port)
	_, health, _ := startOrdersd(t, t.TempDir(), "--review=false", "--nats-url", url, "--ack-token-key-file", testsupport.AckKeyFile(t),
		"--nats-token", "t0ken", "--nats-ca", ca.WriteCA(t, dir, "ca.crt"), "--nats-cert", cert, "--nats-key", key)
	waitServing(t, health)
	// shown is the subject of every client certificate connected.
	shown := func() map[string]int {
		connz, err := ns.Connz(&natsserver.ConnzOptions{Username: true})
		if err != nil {
			t.Fatal(err)
		}
		subjects := map[string]int{}
		for _, c := range connz.Conns {
			for _, pc := range c.TLSPeerCerts[:min(1, len(c.TLSPeerCerts))] {
				subjects[pc.Subject]++
			}
		}
		return subjects
	}
	if got := shown(); len(got) != 1 || got["CN=ordersd-1"] == 0 {
		t.Fatalf("connected with %v, want CN=ordersd-1", got)
	}
	rotated := ca.Issue(t, testsupport.Leaf{CommonName: "ordersd-2"})
	testsupport.ReplaceFile(t, key, rotated.KeyPEM)
	testsupport.ReplaceFile(t, cert, rotated.CertPEM)
	time.Sleep(time.Second) // the watcher has reloaded it by now
	if got := shown(); got["CN=ordersd-1"] == 0 {
		t.Fatalf("after the rotation: %v, want the connection up kept", got)
	}
	connz, err := ns.Connz(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range connz.Conns { // the server goes away and comes back
		_ = ns.DisconnectClientByID(c.Cid)
	}
	if !waitFor(15*time.Second, func() bool { got := shown(); return got["CN=ordersd-2"] > 0 && got["CN=ordersd-1"] == 0 }) {
		t.Fatalf("reconnected with %v, want CN=ordersd-2 only", shown())
	}
	waitServing(t, health)
}
