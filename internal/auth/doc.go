// Package auth decides who a caller is and what it may do. A caller shows
// a bearer token (a static token listed in a tokens file, or a JWT signed
// with a configured key: HMAC, a public key, or a JWKS from a file or an
// https URL), or, over mutual TLS, a client certificate whose identity
// (SPIFFE ID, DNS name or CN) the tokens file grants permissions to. An
// identity holds permissions per RPC group: read, write, watch, consume
// (for all consumers, or per consumer name) and admin (the QueueService,
// and the reserved order-review consumer). Addresses that keep failing
// authentication are throttled before their credentials are checked, and
// the files are reloaded without a restart.
package auth
