package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config names where credentials come from. With none of them set,
// authentication is off.
type Config struct {
	// TokensFile lists static tokens (see TokensFile).
	TokensFile string
	// JWTHMACKeyFile holds the shared key of HS256/384/512 JWTs.
	JWTHMACKeyFile string
	// JWTPublicKeyFile holds a PEM public key (RSA, ECDSA or Ed25519).
	JWTPublicKeyFile string
	// JWKSFile holds a JSON Web Key Set; a JWT names its key by "kid".
	JWKSFile string
	// Issuer and Audience, when set, must match the JWT's iss and aud.
	Issuer, Audience string
}

// Enabled reports whether any credential source is configured.
func (c Config) Enabled() bool {
	return c.TokensFile != "" || c.JWTHMACKeyFile != "" || c.JWTPublicKeyFile != "" || c.JWKSFile != ""
}

// TokensFile is the format of Config.TokensFile (JSON):
//
//	{"tokens": [
//	  {"identity": "warehouse", "token_sha256": "<hex of sha256(token)>", "permissions": ["read", "consume:warehouse"]},
//	  {"identity": "shop", "token": "<the token itself>", "permissions": ["write", "read", "watch"]}
//	]}
//
// token_sha256 keeps the tokens themselves out of the file.
type TokensFile struct {
	Tokens []struct {
		Identity    string   `json:"identity"`
		Token       string   `json:"token,omitempty"`
		TokenSHA256 string   `json:"token_sha256,omitempty"`
		Permissions []string `json:"permissions"`
	} `json:"tokens"`
}

// Authenticator checks bearer tokens.
type Authenticator struct {
	static  map[[sha256.Size]byte]*Identity // by sha256 of the token
	keyfunc jwt.Keyfunc                     // nil: no JWTs
	parser  *jwt.Parser
}

// New loads the credentials of c. It returns nil when authentication is off.
func New(c Config) (*Authenticator, error) {
	if !c.Enabled() {
		return nil, nil
	}
	a := &Authenticator{static: map[[sha256.Size]byte]*Identity{}}
	if c.TokensFile != "" {
		if err := a.loadTokens(c.TokensFile); err != nil {
			return nil, err
		}
	}
	keys := 0
	for _, f := range []string{c.JWTHMACKeyFile, c.JWTPublicKeyFile, c.JWKSFile} {
		if f != "" {
			keys++
		}
	}
	if keys > 1 {
		return nil, errors.New("give one JWT key source: an HMAC key, a public key, or a JWKS file")
	}
	var methods []string
	switch {
	case c.JWTHMACKeyFile != "":
		key, err := os.ReadFile(c.JWTHMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT HMAC key: %w", err)
		}
		key = []byte(strings.TrimSpace(string(key)))
		if len(key) < 32 {
			return nil, errors.New("the JWT HMAC key must be at least 32 bytes")
		}
		a.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		methods = []string{"HS256", "HS384", "HS512"}
	case c.JWTPublicKeyFile != "":
		pem, err := os.ReadFile(c.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT public key: %w", err)
		}
		key, algs, err := parsePublicKey(pem)
		if err != nil {
			return nil, fmt.Errorf("JWT public key %s: %w", c.JWTPublicKeyFile, err)
		}
		a.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		methods = algs
	case c.JWKSFile != "":
		data, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("JWKS: %w", err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("JWKS %s: %w", c.JWKSFile, err)
		}
		a.keyfunc = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			for _, k := range set.Key(kid) {
				if k.IsPublic() {
					return k.Key, nil
				}
			}
			return nil, fmt.Errorf("no public key %q in the JWKS", kid)
		}
		methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	}
	if a.keyfunc != nil {
		opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired()}
		if c.Issuer != "" {
			opts = append(opts, jwt.WithIssuer(c.Issuer))
		}
		if c.Audience != "" {
			opts = append(opts, jwt.WithAudience(c.Audience))
		}
		a.parser = jwt.NewParser(opts...)
	}
	return a, nil
}

func (a *Authenticator) loadTokens(path string) error {
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
		a.static[sum] = &Identity{Name: t.Identity, Permissions: t.Permissions}
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
	// Static tokens are looked up by their SHA-256: the comparison's timing
	// depends on the digest, which tells an attacker nothing of the token.
	if id, ok := a.static[sha256.Sum256([]byte(token))]; ok {
		return id, nil
	}
	if a.parser == nil || strings.Count(token, ".") != 2 {
		return nil, errors.New("unknown token")
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, a.keyfunc); err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, errors.New("the JWT has no subject")
	}
	perms := append([]string(nil), c.Permissions...)
	perms = append(perms, strings.Fields(c.Scope)...)
	return &Identity{Name: c.Subject, Permissions: perms}, nil
}

// authorize is the grpc-ecosystem auth function: it reads the bearer
// token, finds the identity, checks the method's group, and puts the
// identity in the context. The reason a token was refused goes to no one:
// the client learns only that it was.
func (a *Authenticator) authorize(ctx context.Context) (context.Context, error) {
	token, err := grpcauth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "missing bearer token (metadata \"authorization: Bearer <token>\")")
	}
	id, err := a.Authenticate(token)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "invalid or expired bearer token")
	}
	logging.AddFields(ctx, logging.Fields{"identity", id.Name})
	method, _ := grpc.Method(ctx)
	group, known := groups[method]
	if !known || !id.may(group) {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s (needs %q)", id.Name, method, group)
	}
	return WithIdentity(ctx, id), nil
}
