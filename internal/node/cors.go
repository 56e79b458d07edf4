package node

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// CORS for browsers that call the HTTP port from another origin, with the
// methods and headers that connect's CORS guide (connectrpc.com/docs/cors)
// lists for Connect and gRPC-Web, plus Authorization for bearer tokens
// and the W3C trace context headers.
var (
	corsAllowedMethods = []string{http.MethodGet, http.MethodPost}
	corsAllowedHeaders = []string{
		"Authorization", "Content-Type", "Content-Encoding", "Accept-Encoding",
		"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Content-Encoding", "Connect-Accept-Encoding",
		"Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding", "X-Grpc-Web", "X-User-Agent",
		"Traceparent", "Tracestate",
	}
	corsExposedHeaders = []string{
		"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
		"Content-Encoding", "Connect-Content-Encoding", "Connect-Accept-Encoding",
		"Grpc-Encoding", "Grpc-Accept-Encoding",
	}
)

// corsMaxAge is how long (seconds) a browser may cache a preflight answer:
// two hours, the most Chromium honours.
const corsMaxAge = "7200"

// withCORS answers preflight requests from the allowed origins ("*" allows
// every origin) and marks their calls' responses readable by them. Other
// origins get no CORS headers, so browsers keep their pages from reading
// the answers; no origins at all: h alone.
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	anyOrigin := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || (!anyOrigin && !slices.Contains(origins, origin)) {
			h.ServeHTTP(w, r)
			return
		}
		hdr := w.Header()
		hdr.Add("Vary", "Origin")
		hdr.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hdr.Add("Vary", "Access-Control-Request-Method")
			hdr.Add("Vary", "Access-Control-Request-Headers")
			hdr.Set("Access-Control-Allow-Methods", strings.Join(corsAllowedMethods, ", "))
			hdr.Set("Access-Control-Allow-Headers", strings.Join(corsAllowedHeaders, ", "))
			hdr.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		hdr.Set("Access-Control-Expose-Headers", strings.Join(corsExposedHeaders, ", "))
		h.ServeHTTP(w, r)
	})
}

// validateCORSOrigins requires each origin to be "*" or a scheme and host
// (with an optional port) and nothing else, as browsers send it.
func validateCORSOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return fmt.Errorf("--http-cors-origins: %q is not an origin such as https://app.example.com or *", o)
		}
	}
	return nil
}
