package node

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ordersd/ordersd/internal/tlsfiles"
)

// ClusterTLS secures the routes between the embedded NATS servers of a
// cluster (--cluster-listen) with mutual TLS: each node shows a
// certificate signed by the cluster's CA and accepts only peers that show
// one. A route carries every event and every JetStream API request (a
// stream deletion included), so it is authenticated by its certificate,
// encrypted, and the cluster CA should sign nothing but route
// certificates.
type ClusterTLS struct {
	CertFile string // this node's route certificate (PEM); for both accepting and opening routes (--cluster-cert)
	KeyFile  string // its key (--cluster-key)
	CAFile   string // the CAs that sign the peers' route certificates (--cluster-ca)
	// Insecure allows plaintext routes beyond loopback, for a lab
	// (--cluster-insecure).
	Insecure bool
}

func (c ClusterTLS) enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// validate refuses routes beyond loopback without TLS unless Insecure,
// and half a TLS setting.
func (c ClusterTLS) validate(listen string) error {
	switch {
	case c.enabled() && (c.CertFile == "" || c.KeyFile == "" || c.CAFile == ""):
		return errors.New("--cluster-cert, --cluster-key and --cluster-ca go together")
	case c.enabled() && c.Insecure:
		return errors.New("--cluster-insecure asks for plaintext routes, but --cluster-cert is given: choose one")
	case !c.enabled() && !c.Insecure && !isLoopback(listen):
		return fmt.Errorf("--cluster-listen %s is beyond loopback without TLS: any host that reaches it could join the cluster, read every event and delete the stream; give --cluster-cert, --cluster-key and --cluster-ca (or --cluster-insecure, for a lab)", listen)
	}
	return nil
}

// load reads the route certificates (nil without TLS), warning of
// plaintext routes beyond loopback.
func (c ClusterTLS) load(listen string, log *slog.Logger) (*tlsfiles.Files, error) {
	if !c.enabled() {
		if !isLoopback(listen) {
			log.Warn("cluster routes are plaintext and unauthenticated (--cluster-insecure): any host that reaches them can join the cluster, read every event and delete the stream; use --cluster-cert, --cluster-key and --cluster-ca outside a lab", "cluster_listen", listen)
		}
		return nil, nil
	}
	return tlsfiles.Load("cluster routes", c.CertFile, c.KeyFile, c.CAFile)
}
