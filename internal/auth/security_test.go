package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ordersd/ordersd/internal/testsupport"
)

func TestJWTIssuerAndAudienceAreRequiredUnlessWaived(t *testing.T) {
	key := "k.pem"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // part of the error; "" for none
	}{
		{"a key without issuer is refused", Config{JWTPublicKeyFile: key, Audience: "ordersd"}, "--auth-jwt-issuer"},
		{"a key without audience is refused", Config{JWTPublicKeyFile: key, Issuer: "idp"}, "--auth-jwt-audience"},
		{"both set", Config{JWTPublicKeyFile: key, Issuer: "idp", Audience: "ordersd"}, ""},
		{"both waived", Config{JWKSURL: "https://idp.example/jwks", AnyIssuer: true, AnyAudience: true}, ""},
		{"tokens alone need neither", Config{TokensFile: "tokens.json"}, ""},
		{"a JWKS URL must be https", Config{JWKSURL: "http://idp.example/jwks", Issuer: "idp", Audience: "ordersd"}, "https"},
		{"one key source", Config{JWKSURL: "https://idp.example/jwks", JWKSFile: "jwks.json", Issuer: "idp", Audience: "ordersd"}, "one JWT key source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	// Waived, a token of any issuer and audience passes.
	hmacKey := []byte("an-hmac-key-of-at-least-32-bytes!!")
	a, err := New(context.Background(), Config{JWTHMACKeyFile: writeFile(t, "hmac.key", hmacKey), AnyIssuer: true, AnyAudience: true}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, map[string]any{"iss": "x", "aud": "y"}))); err != nil {
		t.Fatalf("waived issuer and audience: %v", err)
	}
}

// The JWKS is fetched over https, and fetched again when a token names a
// key it does not hold: the identity provider rotated its keys.
func TestJWKSFromAnHTTPSURLFollowsKeyRotation(t *testing.T) {
	key1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var served atomic.Pointer[[]byte]
	setKeys := func(keys ...jose.JSONWebKey) {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		served.Store(&b)
	}
	setKeys(jose.JSONWebKey{Key: &key1.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"})
	var fetches atomic.Int32
	idp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*served.Load())
	}))
	t.Cleanup(idp.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := New(ctx, Config{JWKSURL: idp.URL + "/jwks", JWKSClient: idp.Client(), Issuer: "idp", Audience: "ordersd"}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "idp", "aud": "ordersd", "scope": "read"}
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodES256, key1, "k1", testClaims("svc", time.Hour, claims))); err != nil {
		t.Fatalf("token of the served key: %v", err)
	}
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodES256, key2, "k1", testClaims("svc", time.Hour, claims))); err == nil {
		t.Fatal("a token signed by another key under kid k1 was accepted")
	}
	setKeys(jose.JSONWebKey{Key: &key2.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"})
	before := fetches.Load()
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodES256, key2, "k2", testClaims("svc", time.Hour, claims))); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if fetches.Load() == before {
		t.Fatal("the new kid was accepted without fetching the JWKS again")
	}
}

// A tokens file and a JWT key file changed on disk are used after Reload;
// one that does not load is refused and the ones in use are kept.
func TestReloadTokensAndJWTKeys(t *testing.T) {
	dir := t.TempDir()
	file := testsupport.WriteFile(t, dir, "tokens.json", []byte(`{"tokens": [{"identity": "shop", "token": "old", "permissions": ["read"]}]}`))
	oldKey, newKey := []byte("the-old-hmac-key-of-at-least-32-bytes"), []byte("the-new-hmac-key-of-at-least-32-bytes")
	keyFile := testsupport.WriteFile(t, dir, "hmac.key", oldKey)
	a, err := New(context.Background(), Config{TokensFile: file, JWTHMACKeyFile: keyFile, Issuer: "idp", Audience: "ordersd"}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	jwtOf := func(key []byte) string {
		return sign(t, jwt.SigningMethodHS256, key, "", testClaims("svc", time.Hour, map[string]any{"iss": "idp", "aud": "ordersd"}))
	}
	testsupport.ReplaceFile(t, keyFile, newKey)
	testsupport.ReplaceFile(t, file, []byte(`{"tokens": [{"identity": "shop", "token": "new", "permissions": ["read"]}]}`))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate("old"); err == nil {
		t.Error("the removed token still authenticates")
	}
	if _, err := a.Authenticate("new"); err != nil {
		t.Errorf("the added token: %v", err)
	}
	if _, err := a.Authenticate(jwtOf(oldKey)); err == nil {
		t.Error("a JWT of the replaced key still authenticates")
	}
	if _, err := a.Authenticate(jwtOf(newKey)); err != nil {
		t.Errorf("a JWT of the new key: %v", err)
	}
	testsupport.ReplaceFile(t, file, []byte(`{"tokens": [{"token": "no identity"}]}`))
	testsupport.ReplaceFile(t, keyFile, []byte("short"))
	if err := a.Reload(); err == nil {
		t.Fatal("a broken tokens file was loaded")
	}
	if _, err := a.Authenticate("new"); err != nil {
		t.Errorf("after a refused reload, the token in use: %v", err)
	}
	if _, err := a.Authenticate(jwtOf(newKey)); err != nil {
		t.Errorf("after a refused reload, the JWT key in use: %v", err)
	}
}

func TestCertificateIdentity(t *testing.T) {
	ca := testsupport.NewCA(t, "mesh")
	for _, tc := range []struct {
		name string
		leaf testsupport.Leaf
		want string
	}{
		{"a SPIFFE ID wins", testsupport.Leaf{CommonName: "cn", DNSNames: []string{"warehouse.shop"}, URIs: []string{"spiffe://example.org/ns/shop/sa/warehouse"}, NoLoopback: true}, "spiffe://example.org/ns/shop/sa/warehouse"},
		{"then the DNS SAN", testsupport.Leaf{CommonName: "cn", DNSNames: []string{"warehouse.shop"}, NoLoopback: true}, "warehouse.shop"},
		{"then the subject CN", testsupport.Leaf{CommonName: "warehouse", NoLoopback: true}, "warehouse"},
		{"a URI that is no SPIFFE ID is passed over", testsupport.Leaf{CommonName: "warehouse", URIs: []string{"https://example.org/x"}, NoLoopback: true}, "warehouse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := ca.Issue(t, tc.leaf).TLS(t).Leaf
			if got := CertificateIdentity(cert); got != tc.want {
				t.Errorf("CertificateIdentity = %q, want %q", got, tc.want)
			}
		})
	}
}

// methodStream gives a context the method name of a call, as the gRPC
// server does.
type methodStream struct{ method string }

func (s methodStream) Method() string                  { return s.method }
func (s methodStream) SetHeader(metadata.MD) error     { return nil }
func (s methodStream) SendHeader(metadata.MD) error    { return nil }
func (s methodStream) SetTrailer(metadata.MD) error    { return nil }
func (s methodStream) SetTrailerMetadata(metadata.MD)  {}
func (s methodStream) SendTrailerMetadata(metadata.MD) {}

// callContext is the server-side context of a call to method from ip,
// with a bearer token (unless empty) and a verified client certificate
// (unless nil).
func callContext(method, ip, token string, cert *x509.Certificate) context.Context {
	ctx := grpc.NewContextWithServerTransportStream(context.Background(), methodStream{method})
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	if cert != nil {
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	}
	ctx = peer.NewContext(ctx, p)
	if token != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	}
	return ctx
}

// A workload is known by its certificate alone, with the grants of the
// tokens file; a bearer token, when the call carries one, decides over the
// certificate.
func TestAuthorizeByCertificate(t *testing.T) {
	const warehouse = "spiffe://example.org/ns/shop/sa/warehouse"
	file := writeFile(t, "tokens.json", []byte(`{
		"tokens": [{"identity": "shop", "token": "shop-token", "permissions": ["write"]}],
		"certificates": [{"identity": "`+warehouse+`", "permissions": ["read"]}]}`))
	a, err := New(context.Background(), Config{TokensFile: file}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ca := testsupport.NewCA(t, "mesh")
	granted := ca.Issue(t, testsupport.Leaf{URIs: []string{warehouse}}).TLS(t).Leaf
	stranger := ca.Issue(t, testsupport.Leaf{URIs: []string{"spiffe://example.org/ns/shop/sa/stranger"}}).TLS(t).Leaf
	const get, create = "/orders.v1.OrderService/GetOrder", "/orders.v1.OrderService/CreateOrder"
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		want   codes.Code
		caller string
	}{
		{"a granted certificate may read", callContext(get, "10.0.0.1", "", granted), codes.OK, warehouse},
		{"but not write", callContext(create, "10.0.0.1", "", granted), codes.PermissionDenied, ""},
		{"a certificate without grants may do nothing", callContext(get, "10.0.0.1", "", stranger), codes.PermissionDenied, ""},
		{"a token wins over the certificate", callContext(create, "10.0.0.1", "shop-token", granted), codes.OK, "shop"},
		{"and takes the certificate's grants away", callContext(get, "10.0.0.1", "shop-token", granted), codes.PermissionDenied, ""},
		{"an invalid token is refused, certificate or not", callContext(get, "10.0.0.1", "wrong", granted), codes.Unauthenticated, ""},
		{"no token and no certificate", callContext(get, "10.0.0.1", "", nil), codes.Unauthenticated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := a.authorize(tc.ctx)
			if status.Code(err) != tc.want {
				t.Fatalf("authorize: %v, want %v", err, tc.want)
			}
			if tc.want == codes.OK && FromContext(ctx).Name != tc.caller {
				t.Fatalf("caller %q, want %q", FromContext(ctx).Name, tc.caller)
			}
		})
	}
}

// An address that keeps failing authentication is refused before its
// credential is checked, even a valid one; other addresses are not.
func TestFailedAuthenticationIsThrottledPerAddress(t *testing.T) {
	file := writeFile(t, "tokens.json", []byte(`{"tokens": [{"identity": "shop", "token": "good", "permissions": ["read"]}]}`))
	a, err := New(context.Background(), Config{TokensFile: file}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	const get = "/orders.v1.OrderService/GetOrder"
	for i := range DefaultFailureBurst {
		if _, err := a.authorize(callContext(get, "192.0.2.7", "guess", nil)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("guess %d: %v, want UNAUTHENTICATED", i, err)
		}
	}
	if _, err := a.authorize(callContext(get, "192.0.2.7", "guess", nil)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a guess past the burst: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := a.authorize(callContext(get, "192.0.2.7", "good", nil)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a valid token from the throttled address: %v, want RESOURCE_EXHAUSTED before it is checked", err)
	}
	if _, err := a.authorize(callContext(get, "192.0.2.8", "good", nil)); err != nil {
		t.Fatalf("another address: %v", err)
	}
}
