package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"time"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ordersd/ordersd/internal/console"
	"github.com/ordersd/ordersd/internal/tlsfiles"
)

// jsonExpansion bounds how much larger than its protobuf encoding a
// message may be in JSON (field names, quoted 64-bit integers, base64):
// the HTTP server buffers messages up to this many times
// Limits.MaxRecvMsgSize, and gRPC then applies MaxRecvMsgSize itself.
const jsonExpansion = 4

// httpServer serves the node's gRPC services over HTTP/1.1 and HTTP/2
// (h2c in plaintext, h2 with TLS) in three protocols: Connect (JSON or
// protobuf, unary and server streams), gRPC-Web and gRPC. vanguard
// transcodes each call into a gRPC call on the very *grpc.Server of the
// gRPC port (through its ServeHTTP), so the same interceptors
// (metrics, logging, recovery, authentication, rate limits), stats
// handler (tracing) and message size limit apply, and TLS uses the same
// certificate and client CAs. With Config.Console, it also serves the
// operator console at "/" (see withConsole).
type httpServer struct {
	srv     *http.Server
	lis     net.Listener
	console bool // serving the console
}

// consoleURL is where a browser on this host opens the console.
func (h *httpServer) consoleURL() string {
	scheme := "http"
	if h.srv.TLSConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + h.lis.Addr().String() + "/"
}

// newHTTPServer serves gs on lis, once serve is called, with the TLS of
// tlsFiles (the gRPC port's certificate and client CAs; plaintext when
// nil).
func newHTTPServer(lis net.Listener, gs *grpc.Server, cfg Config, tlsFiles *tlsfiles.Files, log *slog.Logger) (*httpServer, error) {
	var tlsConfig *tls.Config
	if tlsFiles != nil {
		tlsConfig = tlsFiles.ServerConfig()
	} else if !isLoopback(cfg.HTTPAddr) {
		log.Warn("HTTP is listening beyond loopback without TLS: calls and their data travel in clear text; set --tls-cert and --tls-key", "addr", cfg.HTTPAddr)
	}
	transcoder, err := vanguardgrpc.NewTranscoder(gs,
		vanguard.WithDefaultServiceOptions(
			vanguard.WithMaxMessageBufferBytes(uint32(min(cfg.Limits.MaxRecvMsgSize, 1<<29)*jsonExpansion)),
		),
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			// As connect-go's JSON: fields at their default are left out
			// (vanguard's default writes them all, "event": null included),
			// and unknown fields are ignored, for clients on a newer API.
			return &vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res, DiscardUnknown: true},
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("HTTP transcoder: %w", err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if tlsConfig != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true) // gRPC clients speak h2c in plaintext
	}
	var handler http.Handler = withCORS(cfg.HTTPCORSOrigins, connectUnaryByDefault(transcoder))
	if cfg.Console {
		handler = withConsole(console.New(), handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // failed handshakes and the like
		Protocols:         &protocols,
		TLSConfig:         tlsConfig,
		// The gRPC port's transport limits, for HTTP/2 connections.
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(min(cfg.Limits.MaxConcurrentStreams, 1<<31-1)),
			SendPingTimeout:      keepaliveParams.Time,
			PingTimeout:          keepaliveParams.Timeout,
		},
	}
	return &httpServer{srv: srv, lis: lis, console: cfg.Console}, nil
}

func (h *httpServer) serve(log *slog.Logger) error {
	if h.console {
		log.Info("serving the operator console", "url", h.consoleURL())
	}
	log.Info("serving HTTP: Connect, gRPC-Web and gRPC", "addr", h.lis.Addr().String(), "tls", h.srv.TLSConfig != nil)
	var err error
	if h.srv.TLSConfig != nil {
		err = h.srv.ServeTLS(h.lis, "", "")
	} else {
		err = h.srv.Serve(h.lis)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", err)
	}
	return nil
}

// shutdown closes the listener and waits for the calls in flight until
// ctx ends, then closes their connections. It reports whether every call
// finished in time.
func (h *httpServer) shutdown(ctx context.Context) bool {
	if err := h.srv.Shutdown(ctx); err != nil {
		_ = h.srv.Close()
		return false
	}
	return true
}

// connectUnaryByDefault marks a POST with a JSON or protobuf body and no
// Connect-Protocol-Version header as a Connect unary call, so that
// `curl -H 'Content-Type: application/json' -d '{…}' …/CreateOrder` works
// as connect-go handlers take it. vanguard would otherwise take it for a
// REST call (it serves google.api.http routes too), and ordersd has no
// REST routes to match.
func connectUnaryByDefault(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "application/json" || mediaType == "application/proto" {
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		h.ServeHTTP(w, r)
	})
}

// withConsole sends the console's requests (GET or HEAD of "/" and of its
// files) to c and everything else, every RPC, to api. The console needs
// no CORS: it calls the origin it was loaded from.
func withConsole(c *console.Handler, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.Serves(r) {
			c.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
