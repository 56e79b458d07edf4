package xds_test

import (
	"testing"

	"github.com/ordersd/ordersd/client"
	"github.com/ordersd/ordersd/client/xds"
)

// With the package linked in and a bootstrap present, a target without a
// scheme resolves through xDS.
func TestDialUsesXDSWhenABootstrapIsPresent(t *testing.T) {
	t.Setenv("GRPC_XDS_BOOTSTRAP_CONFIG", `{"xds_servers": [{"server_uri": "127.0.0.1:1", "channel_creds": [{"type": "insecure"}]}], "node": {"id": "test"}}`)
	c, err := client.Dial("orders.example:50051", client.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Conn().Target(); got != "xds:///orders.example:50051" {
		t.Fatalf("target %q, want xds:///orders.example:50051", got)
	}
}

// Credentials builds the mesh's transport security, with a fallback.
func TestCredentials(t *testing.T) {
	opt, err := xds.Credentials(nil)
	if err != nil || opt == nil {
		t.Fatalf("Credentials(nil) = %v, %v", opt, err)
	}
	c, err := client.Dial("127.0.0.1:50051", opt)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}
