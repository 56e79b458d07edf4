package auth

import (
	"context"
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// CertificateIdentity names the workload that holds a client certificate:
// its SPIFFE ID (the one URI SAN, as spiffe://example.org/ns/shop/sa/warehouse),
// otherwise its first DNS SAN, otherwise its subject CN. The tokens file
// grants permissions to these names.
func CertificateIdentity(cert *x509.Certificate) string {
	if id, err := x509svid.IDFromCert(cert); err == nil {
		return id.String()
	}
	if len(cert.DNSNames) > 0 {
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}

// peerCertificateIdentity is the identity of the caller's client
// certificate, when the TLS handshake verified one (mutual TLS).
func peerCertificateIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	name := CertificateIdentity(info.State.VerifiedChains[0][0])
	return name, name != ""
}
