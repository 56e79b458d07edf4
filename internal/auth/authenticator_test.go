package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ordersd/ordersd/internal/testsupport"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testClaims(sub string, exp time.Duration, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestStaticTokens(t *testing.T) {
	sum := sha256.Sum256([]byte("hashed-secret"))
	file := writeFile(t, "tokens.json", []byte(`{"tokens": [
		{"identity": "shop", "token": "plain-secret", "permissions": ["write", "read"]},
		{"identity": "warehouse", "token_sha256": "`+hex.EncodeToString(sum[:])+`", "permissions": ["consume:warehouse"]}
	]}`))
	a, err := New(context.Background(), Config{TokensFile: file}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Authenticate("plain-secret"); err != nil || id.Name != "shop" || !id.may(Write) || id.may(Watch) {
		t.Errorf("plain token: %+v, %v", id, err)
	}
	id, err := a.Authenticate("hashed-secret")
	if err != nil || id.Name != "warehouse" || !id.may(Consume) || !id.MayConsume("warehouse") || id.MayConsume("other") || id.may(Read) {
		t.Errorf("hashed token: %+v, %v", id, err)
	}
	for _, bad := range []string{"", "plain-secre", "PLAIN-SECRET", "a.b.c"} {
		if _, err := a.Authenticate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, broken := range []string{`{"tokens": [{"token": "x"}]}`, `{"tokens": [{"identity": "a", "token_sha256": "zz"}]}`, `not json`} {
		if _, err := New(context.Background(), Config{TokensFile: writeFile(t, "bad.json", []byte(broken))}, testsupport.Logger()); err == nil {
			t.Errorf("tokens file %s accepted", broken)
		}
	}
}

func TestJWTs(t *testing.T) {
	hmacKey := []byte("an-hmac-key-of-at-least-32-bytes!!")
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})

	hmacAuth, err := New(context.Background(), Config{JWTHMACKeyFile: writeFile(t, "hmac.key", hmacKey), Issuer: "idp", Audience: "ordersd"}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	pubAuth, err := New(context.Background(), Config{JWTPublicKeyFile: writeFile(t, "ec.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})), AnyIssuer: true, AnyAudience: true}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	jwksAuth, err := New(context.Background(), Config{JWKSFile: writeFile(t, "jwks.json", jwks), AnyIssuer: true, AnyAudience: true}, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]any{"iss": "idp", "aud": "ordersd", "scope": "read watch", "permissions": []string{"consume:q"}}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	for name, c := range map[string]struct {
		a     *Authenticator
		token string
		ok    bool
	}{
		"HMAC":                                  {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, good)), true},
		"HMAC, expired":                         {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", -time.Minute, good)), false},
		"HMAC, expired within the clock leeway": {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", -10*time.Second, good)), true},
		"HMAC, no issuer":                       {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, map[string]any{"aud": "ordersd", "scope": "read watch"})), false},
		"HMAC, no audience":                     {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, map[string]any{"iss": "idp", "scope": "read watch"})), false},
		"HMAC, no expiry":                       {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", jwt.MapClaims{"sub": "svc", "iss": "idp", "aud": "ordersd"}), false},
		"HMAC, wrong issuer":                    {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, map[string]any{"iss": "evil", "aud": "ordersd"})), false},
		"HMAC, wrong audience":                  {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("svc", time.Hour, map[string]any{"iss": "idp", "aud": "other"})), false},
		"HMAC, wrong key":                       {hmacAuth, sign(t, jwt.SigningMethodHS256, []byte("another-key-of-at-least-32-bytes!!!"), "", testClaims("svc", time.Hour, good)), false},
		"HMAC, no subject":                      {hmacAuth, sign(t, jwt.SigningMethodHS256, hmacKey, "", testClaims("", time.Hour, good)), false},
		"HMAC, alg none":                        {hmacAuth, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", testClaims("svc", time.Hour, good)), false},
		"ES256":                                 {pubAuth, sign(t, jwt.SigningMethodES256, ecKey, "", testClaims("svc", time.Hour, good)), true},
		"ES256, other key":                      {pubAuth, sign(t, jwt.SigningMethodES256, otherEC, "", testClaims("svc", time.Hour, good)), false},
		"ES256 key, HMAC token":                 {pubAuth, sign(t, jwt.SigningMethodHS256, ecDER, "", testClaims("svc", time.Hour, good)), false},
		"JWKS":                                  {jwksAuth, sign(t, jwt.SigningMethodRS256, rsaKey, "k1", testClaims("svc", time.Hour, good)), true},
		"JWKS, unknown kid":                     {jwksAuth, sign(t, jwt.SigningMethodRS256, rsaKey, "k2", testClaims("svc", time.Hour, good)), false},
	} {
		t.Run(name, func(t *testing.T) {
			id, err := c.a.Authenticate(c.token)
			if (err == nil) != c.ok {
				t.Fatalf("Authenticate: %+v, %v; want ok %v", id, err, c.ok)
			}
			if c.ok && (id.Name != "svc" || !id.may(Read) || !id.may(Watch) || !id.MayConsume("q") || id.may(Write)) {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}
