package node

import (
	"crypto/tls"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/ordersd/ordersd/internal/natsconn"
	"github.com/ordersd/ordersd/internal/testsupport"
)

// A node's cluster routes take only peers whose route certificate the
// cluster CA signed: a plaintext server and one with a certificate of
// another CA never join, one with the right certificate does. A CA added
// to the bundle on disk is trusted after a reload, without a restart.
func TestClusterRoutesNeedMutualTLS(t *testing.T) {
	dir := t.TempDir()
	clusterCA, otherCA := testsupport.NewCA(t, "orders cluster"), testsupport.NewCA(t, "another CA")
	cert, key := clusterCA.Issue(t, testsupport.Leaf{CommonName: "node"}).Write(t, dir, "route")
	caFile := clusterCA.WriteCA(t, dir, "cluster-ca.crt")
	cfg := validConfig(t.TempDir())
	cfg.ServerName = "node"
	// JetStream in a cluster needs a route to start: one to a port where
	// no peer listens (yet).
	absent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	absent.Close()
	cfg.Cluster = natsconn.EmbeddedCluster{Name: "orders", Listen: "127.0.0.1:-1", Routes: []string{absent.Addr().String()}}
	cfg.ClusterTLS = ClusterTLS{CertFile: cert, KeyFile: key, CAFile: caFile}
	log := testsupport.Logger()
	conn, err := connectNATS(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.close(time.Second, log) })
	node := conn.embedded
	routeURL := "nats-route://" + node.ClusterAddr().String()

	// peer starts a plain nats-server that routes to the node with tlsCfg.
	peer := func(t *testing.T, name string, tlsCfg *tls.Config) *natsserver.Server {
		return testsupport.StartNATS(t, func(o *natsserver.Options) {
			o.ServerName, o.JetStream = name, false
			o.Cluster.Name, o.Cluster.Host, o.Cluster.Port = "orders", "127.0.0.1", -1
			o.Cluster.TLSConfig, o.Cluster.TLSTimeout = tlsCfg, 2
			o.Routes = natsserver.RoutesFromStr(routeURL)
		})
	}
	// mutual is a peer's route TLS: its certificate, and the CAs it trusts.
	mutual := func(pair testsupport.Pair, trusts ...*testsupport.CA) *tls.Config {
		pool := clusterCA.Pool()
		for _, ca := range trusts {
			pool.AddCert(ca.Cert)
		}
		return &tls.Config{Certificates: []tls.Certificate{pair.TLS(t)}, RootCAs: pool, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	}
	joined := func(peer *natsserver.Server, within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if peer.NumRoutes() > 0 && node.NumRoutes() > 0 {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	// A refused peer retries about every second; three seconds give it
	// several tries.
	const refusedFor = 3 * time.Second

	t.Run("a plaintext peer is refused", func(t *testing.T) {
		if joined(peer(t, "plaintext", nil), refusedFor) {
			t.Fatal("a plaintext server joined the cluster")
		}
	})
	t.Run("a peer certified by another CA is refused", func(t *testing.T) {
		if joined(peer(t, "stranger", mutual(otherCA.Issue(t, testsupport.Leaf{CommonName: "stranger"}))), refusedFor) {
			t.Fatal("a server with another CA's certificate joined the cluster")
		}
	})
	t.Run("a peer certified by the cluster CA joins", func(t *testing.T) {
		if !joined(peer(t, "member", mutual(clusterCA.Issue(t, testsupport.Leaf{CommonName: "member"}))), 15*time.Second) {
			t.Fatal("a server with the cluster's certificate did not join")
		}
	})
	t.Run("a CA added to the bundle is trusted after a reload", func(t *testing.T) {
		newcomer := peer(t, "newcomer", mutual(otherCA.Issue(t, testsupport.Leaf{CommonName: "newcomer"}), otherCA))
		if joined(newcomer, refusedFor) {
			t.Fatal("joined before its CA was trusted")
		}
		testsupport.ReplaceFile(t, caFile, slices.Concat(clusterCA.PEM, otherCA.PEM))
		for _, f := range conn.tls {
			if err := f.Reload(); err != nil {
				t.Fatal(err)
			}
		}
		if !joined(newcomer, 15*time.Second) {
			t.Fatal("a server of the newly trusted CA did not join after the reload")
		}
	})
}

// Plaintext routes beyond loopback start only with --cluster-insecure,
// and then with a warning that says what it exposes.
func TestInsecureClusterRoutesWarn(t *testing.T) {
	logs := &syncBuffer{}
	files, err := ClusterTLS{Insecure: true}.load("0.0.0.0:6222", slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil || files != nil {
		t.Fatalf("load: %v, %v; want no TLS and no error", files, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "--cluster-insecure") {
		t.Fatalf("log %q: want a warning about plaintext routes", logs.String())
	}
}
