package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ClockLeeway is how far the clocks of ordersd and a JWT's issuer may
// disagree: a token is accepted this long past its exp and before its nbf
// or iat.
const ClockLeeway = 30 * time.Second

// Config names where credentials come from. With none of them set,
// authentication is off.
type Config struct {
	// TokensFile lists static tokens and certificate identities with their
	// permissions (see TokensFile).
	TokensFile string
	// JWTHMACKeyFile holds the shared key of HS256/384/512 JWTs.
	JWTHMACKeyFile string
	// JWTPublicKeyFile holds a PEM public key (RSA, ECDSA or Ed25519).
	JWTPublicKeyFile string
	// JWKSFile holds a JSON Web Key Set; a JWT names its key by "kid".
	JWKSFile string
	// JWKSURL serves a JSON Web Key Set over https; it is cached, refreshed
	// hourly and when a JWT names a kid it does not hold.
	JWKSURL string
	// JWKSClient fetches JWKSURL (nil: an http.Client that trusts the
	// system's CAs).
	JWKSClient *http.Client
	// Issuer and Audience must match the JWT's iss and aud. Each is
	// required with a JWT key source unless waived by AnyIssuer or
	// AnyAudience: without them, a token that a shared identity provider
	// minted for another service would be accepted here.
	Issuer, Audience       string
	AnyIssuer, AnyAudience bool
	// FailureBurst is how many failed authentications an address may make
	// before it is throttled (see failureThrottle); DefaultFailureBurst
	// when zero.
	FailureBurst int
}

// Enabled reports whether any credential source is configured.
func (c Config) Enabled() bool {
	return c.TokensFile != "" || c.jwtEnabled()
}

func (c Config) jwtEnabled() bool {
	return c.JWTHMACKeyFile != "" || c.JWTPublicKeyFile != "" || c.JWKSFile != "" || c.JWKSURL != ""
}

// Validate reports settings that do not go together, naming the flags.
func (c Config) Validate() error {
	keys := 0
	for _, f := range []string{c.JWTHMACKeyFile, c.JWTPublicKeyFile, c.JWKSFile, c.JWKSURL} {
		if f != "" {
			keys++
		}
	}
	switch {
	case keys > 1:
		return errors.New("give one JWT key source: --auth-jwt-hmac-key-file, --auth-jwt-public-key-file, --auth-jwks-file or --auth-jwks-url")
	case c.JWKSURL != "" && !strings.HasPrefix(c.JWKSURL, "https://"):
		return fmt.Errorf("--auth-jwks-url must be an https URL, got %q", c.JWKSURL)
	case !c.jwtEnabled():
		return nil
	case c.Issuer == "" && !c.AnyIssuer:
		return errors.New("JWTs need --auth-jwt-issuer (the iss your identity provider writes), or --auth-jwt-any-issuer to accept any")
	case c.Audience == "" && !c.AnyAudience:
		return errors.New("JWTs need --auth-jwt-audience (the aud your identity provider writes for ordersd), or --auth-jwt-any-audience to accept any")
	}
	if c.JWKSURL != "" {
		if _, err := url.Parse(c.JWKSURL); err != nil {
			return fmt.Errorf("--auth-jwks-url: %w", err)
		}
	}
	return nil
}

// TokensFile is the format of Config.TokensFile (JSON):
//
//	{"tokens": [
//	  {"identity": "warehouse", "token_sha256": "<hex of sha256(token)>", "permissions": ["read", "consume:warehouse"]},
//	  {"identity": "shop", "token": "<the token itself>", "permissions": ["write", "read", "watch"]}
//	 ],
//	 "certificates": [
//	  {"identity": "spiffe://example.org/ns/shop/sa/billing", "permissions": ["read"]}
//	]}
//
// token_sha256 keeps the tokens themselves out of the file. A certificate
// identity is what CertificateIdentity reads from a client certificate
// verified by mutual TLS: a SPIFFE ID, a DNS name or a subject CN.
type TokensFile struct {
	Tokens []struct {
		Identity    string   `json:"identity"`
		Token       string   `json:"token,omitempty"`
		TokenSHA256 string   `json:"token_sha256,omitempty"`
		Permissions []string `json:"permissions"`
	} `json:"tokens"`
	Certificates []struct {
		Identity    string   `json:"identity"`
		Permissions []string `json:"permissions"`
	} `json:"certificates"`
}

// Authenticator checks bearer tokens and client certificates. Its files
// can be read again (Reload) while it serves.
type Authenticator struct {
	cfg      Config
	creds    atomic.Pointer[grants]
	failures *failureThrottle
	jwks     keyfunc.Keyfunc // from cfg.JWKSURL; refreshes itself
	log      *slog.Logger
}

// grants are what the files say, swapped whole on a reload.
type grants struct {
	static  map[[sha256.Size]byte]*Identity // by sha256 of the token
	certs   map[string]*Identity            // by certificate identity
	keyfunc jwt.Keyfunc                     // nil: no JWTs
	parser  *jwt.Parser
}

// New loads the credentials of c, which must be valid. It returns nil
// when authentication is off. A JWKS URL is fetched in the background
// until ctx ends; a fetch that fails is logged and retried.
func New(ctx context.Context, c Config, log *slog.Logger) (*Authenticator, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{cfg: c, failures: newFailureThrottle(c.FailureBurst), log: log}
	if c.JWKSURL != "" {
		jwks, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
			Client: c.JWKSClient,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Error("JWKS refresh failed; keeping the keys held", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("--auth-jwks-url: %w", err)
		}
		a.jwks = jwks
	}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Files are the files the authenticator reads.
func (a *Authenticator) Files() []string {
	var files []string
	for _, f := range []string{a.cfg.TokensFile, a.cfg.JWTHMACKeyFile, a.cfg.JWTPublicKeyFile, a.cfg.JWKSFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// Reload reads the tokens file and the JWT key file again. When one of
// them does not load, it returns why and keeps the credentials in use.
func (a *Authenticator) Reload() error {
	c := a.cfg
	creds := &grants{static: map[[sha256.Size]byte]*Identity{}, certs: map[string]*Identity{}}
	if c.TokensFile != "" {
		if err := creds.loadTokens(c.TokensFile); err != nil {
			return err
		}
	}
	var methods []string
	switch {
	case c.JWTHMACKeyFile != "":
		key, err := os.ReadFile(c.JWTHMACKeyFile)
		if err != nil {
			return fmt.Errorf("JWT HMAC key: %w", err)
		}
		key = []byte(strings.TrimSpace(string(key)))
		if len(key) < 32 {
			return errors.New("the JWT HMAC key must be at least 32 bytes")
		}
		creds.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		methods = []string{"HS256", "HS384", "HS512"}
	case c.JWTPublicKeyFile != "":
		pem, err := os.ReadFile(c.JWTPublicKeyFile)
		if err != nil {
			return fmt.Errorf("JWT public key: %w", err)
		}
		key, algs, err := parsePublicKey(pem)
		if err != nil {
			return fmt.Errorf("JWT public key %s: %w", c.JWTPublicKeyFile, err)
		}
		creds.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		methods = algs
	case c.JWKSFile != "":
		data, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return fmt.Errorf("JWKS: %w", err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return fmt.Errorf("JWKS %s: %w", c.JWKSFile, err)
		}
		if len(set.Keys) == 0 {
			return fmt.Errorf("JWKS %s holds no key", c.JWKSFile)
		}
		creds.keyfunc = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			for _, k := range set.Key(kid) {
				if k.IsPublic() {
					return k.Key, nil
				}
			}
			return nil, fmt.Errorf("no public key %q in the JWKS", kid)
		}
		methods = asymmetricMethods
	case a.jwks != nil:
		creds.keyfunc = a.jwks.Keyfunc
		methods = asymmetricMethods
	}
	if creds.keyfunc != nil {
		opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(ClockLeeway)}
		if !c.AnyIssuer {
			opts = append(opts, jwt.WithIssuer(c.Issuer))
		}
		if !c.AnyAudience {
			opts = append(opts, jwt.WithAudience(c.Audience))
		}
		creds.parser = jwt.NewParser(opts...)
	}
	a.creds.Store(creds)
	return nil
}

// asymmetricMethods are the JWT algorithms a key set may verify: never
// HMAC, whose "public" key would be the secret itself.
var asymmetricMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (c *grants) loadTokens(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	var f TokensFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("tokens file %s: %w", path, err)
	}
	for i, t := range f.Tokens {
		var sum [sha256.Size]byte
		switch {
		case t.Identity == "":
			return fmt.Errorf("tokens file %s: token %d has no identity", path, i)
		case t.Token != "" && t.TokenSHA256 != "":
			return fmt.Errorf("tokens file %s: token %d has both token and token_sha256", path, i)
		case t.Token != "":
			sum = sha256.Sum256([]byte(t.Token))
		default:
			raw, err := hex.DecodeString(t.TokenSHA256)
			if err != nil || len(raw) != sha256.Size {
				return fmt.Errorf("tokens file %s: token %d: token_sha256 is not 64 hex digits", path, i)
			}
			copy(sum[:], raw)
		}
		c.static[sum] = &Identity{Name: t.Identity, Permissions: t.Permissions}
	}
	for i, cert := range f.Certificates {
		if cert.Identity == "" {
			return fmt.Errorf("tokens file %s: certificate %d has no identity", path, i)
		}
		if _, dup := c.certs[cert.Identity]; dup {
			return fmt.Errorf("tokens file %s: certificate identity %q is listed twice", path, cert.Identity)
		}
		c.certs[cert.Identity] = &Identity{Name: cert.Identity, Permissions: cert.Permissions}
	}
	return nil
}

// claims are the JWT claims ordersd reads: the subject names the identity,
// and permissions come from "permissions" (a list) or "scope" (OAuth 2.0,
// space-separated).
type claims struct {
	jwt.RegisteredClaims
	Permissions []string `json:"permissions,omitempty"`
	Scope       string   `json:"scope,omitempty"`
}

// Authenticate returns the identity of a bearer token.
func (a *Authenticator) Authenticate(token string) (*Identity, error) {
	creds := a.creds.Load()
	// Static tokens are looked up by their SHA-256: the comparison's timing
	// depends on the digest, which tells an attacker nothing of the token.
	if id, ok := creds.static[sha256.Sum256([]byte(token))]; ok {
		return id, nil
	}
	if creds.parser == nil || strings.Count(token, ".") != 2 {
		return nil, errors.New("unknown token")
	}
	var c claims
	if _, err := creds.parser.ParseWithClaims(token, &c, creds.keyfunc); err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, errors.New("the JWT has no subject")
	}
	perms := append([]string(nil), c.Permissions...)
	perms = append(perms, strings.Fields(c.Scope)...)
	return &Identity{Name: c.Subject, Permissions: perms}, nil
}

// certificateIdentity returns the grants of a certificate identity: none
// when the tokens file lists none for it.
func (a *Authenticator) certificateIdentity(name string) *Identity {
	if id, ok := a.creds.Load().certs[name]; ok {
		return id
	}
	return &Identity{Name: name}
}

// authorize is the grpc-ecosystem auth function: it finds the caller's
// identity, checks the method's group, and puts the identity in the
// context.
//
// A bearer token, when the call carries one, decides who the caller is,
// even over a client certificate: a token is chosen per call (a gateway
// calls on behalf of others), a certificate per connection. A call without
// a token is the workload of its verified client certificate, when there
// is one.
//
// An address that has failed authentication too often is refused before
// its credential is checked (failureThrottle). The reason a token was
// refused goes to no one: the client learns only that it was.
func (a *Authenticator) authorize(ctx context.Context) (context.Context, error) {
	addr := peerAddress(ctx)
	if !a.failures.allowed(addr) {
		return nil, status.Error(codes.ResourceExhausted, "too many failed authentications from this address; retry later")
	}
	var id *Identity
	switch {
	case len(metadata.ValueFromIncomingContext(ctx, "authorization")) > 0:
		token, err := grpcauth.AuthFromMD(ctx, "bearer")
		if err != nil {
			a.failures.failed(addr)
			return nil, status.Error(codes.Unauthenticated, "malformed authorization (want metadata \"authorization: Bearer <token>\")")
		}
		if id, err = a.Authenticate(token); err != nil {
			a.failures.failed(addr)
			return nil, status.Error(codes.Unauthenticated, "invalid or expired bearer token")
		}
	default:
		name, ok := peerCertificateIdentity(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "missing bearer token (metadata \"authorization: Bearer <token>\") or client certificate")
		}
		id = a.certificateIdentity(name)
	}
	logging.AddFields(ctx, logging.Fields{"identity", id.Name})
	method, _ := grpc.Method(ctx)
	group, known := groups[method]
	if !known || !id.may(group) {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s (needs %q)", id.Name, method, group)
	}
	return WithIdentity(ctx, id), nil
}
