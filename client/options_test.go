package client_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/ordersd/ordersd/client"
)

// Options at odds with each other or malformed fail Dial with
// ErrInvalidOption, before anything is dialled.
func TestDialRefusesBadOptions(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, opts := range map[string][]client.Option{
		"plaintext with a CA":                 {client.WithInsecure(), client.WithCAFile(missing)},
		"plaintext with a bearer token":       {client.WithInsecure(), client.WithBearerToken("t")},
		"credentials with plaintext":          {client.WithTransportCredentials(insecure.NewCredentials()), client.WithInsecure()},
		"an empty token":                      {client.WithBearerToken("")},
		"a certificate without its key":       {client.WithClientCertificateFiles("cert.pem", "")},
		"a CA file that is not there":         {client.WithCAFile(missing)},
		"an unknown balancer":                 {client.WithInsecure(), client.WithBalancer("random")},
		"keepalive pings faster than allowed": {client.WithInsecure(), client.WithKeepalive(keepalive.ClientParameters{Time: time.Second})},
		"no logger":                           {client.WithInsecure(), client.WithLogger(nil)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := client.Dial("127.0.0.1:50051", opts...)
			if !errors.Is(err, client.ErrInvalidOption) {
				if c != nil {
					_ = c.Close()
				}
				t.Fatalf("Dial: %v, want ErrInvalidOption", err)
			}
		})
	}
}
