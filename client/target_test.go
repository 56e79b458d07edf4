package client

import (
	"errors"
	"testing"
)

// How targets resolve: a scheme gRPC knows is kept; a list becomes a static
// list; one name goes through DNS, or through xDS when a bootstrap is
// present, and is refused when xDS is not linked in.
func TestResolveTarget(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	noEnv := env(nil)
	bootstrap := env(map[string]string{xdsBootstrapFileEnv: "/etc/grpc/bootstrap.json"})
	bootstrapContent := env(map[string]string{xdsBootstrapConfigEnv: "{}"})
	withXDS := func(s string) bool { return s == "dns" || s == "unix" || s == "xds" }
	withoutXDS := func(s string) bool { return s == "dns" || s == "unix" }
	for _, tc := range []struct {
		name, target string
		getenv       func(string) string
		registered   func(string) bool
		want         string
		static       bool // a static list
		err          error
	}{
		{name: "one address resolves through DNS", target: "127.0.0.1:50051", getenv: noEnv, registered: withoutXDS, want: "dns:///127.0.0.1:50051"},
		{name: "a name resolves through DNS", target: "orders.prod.svc:50051", getenv: noEnv, registered: withXDS, want: "dns:///orders.prod.svc:50051"},
		{name: "an explicit scheme is kept", target: "dns:///orders:50051", getenv: bootstrap, registered: withoutXDS, want: "dns:///orders:50051"},
		{name: "a unix socket is kept", target: "unix:///run/ordersd.sock", getenv: noEnv, registered: withoutXDS, want: "unix:///run/ordersd.sock"},
		{name: "a list is a static list", target: "10.0.0.1:50051, 10.0.0.2:50051", getenv: noEnv, registered: withoutXDS, want: staticScheme + ":///", static: true},
		{name: "a bootstrap file means xDS", target: "orders:50051", getenv: bootstrap, registered: withXDS, want: "xds:///orders:50051"},
		{name: "bootstrap content means xDS", target: "orders:50051", getenv: bootstrapContent, registered: withXDS, want: "xds:///orders:50051"},
		{name: "a bootstrap without xDS linked in is refused", target: "orders:50051", getenv: bootstrap, registered: withoutXDS, err: ErrXDSNotLinked},
		{name: "an empty target is refused", target: " ", getenv: noEnv, registered: withoutXDS, err: ErrInvalidOption},
		{name: "an empty list entry is refused", target: "a:1,,b:2", getenv: noEnv, registered: withoutXDS, err: ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveTarget(tc.target, tc.getenv, tc.registered)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("resolveTarget(%q) error %v, want %v", tc.target, err, tc.err)
				}
				return
			}
			if err != nil || got.target != tc.want {
				t.Fatalf("resolveTarget(%q) = %q, %v; want %q", tc.target, got.target, err, tc.want)
			}
			if tc.static != (got.static != nil) {
				t.Fatalf("resolveTarget(%q): static resolver %v, want one: %v", tc.target, got.static != nil, tc.static)
			}
		})
	}
}
