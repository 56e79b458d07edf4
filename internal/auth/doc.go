// Package auth decides who a caller is and what it may do. A caller shows
// a bearer token: a static token listed in a tokens file, or a JWT signed
// with a configured key (HMAC, a public key, or a JWKS file). An identity
// holds permissions per RPC group: read, write, watch, and consume (for all
// consumers, or per consumer name).
package auth
