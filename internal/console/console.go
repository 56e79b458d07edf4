// Package console serves the operator console: a page in the browser
// (board, orders, queues, dead letters, health) that calls ordersd's API
// on the same HTTP port, over the Connect protocol. The page is built
// from web/ (TypeScript, bundled by esbuild) into assets/, which is
// embedded in the binary.
//
// The bundle assets/console.js is committed, and CI rebuilds it and checks
// that it is unchanged (as it does for gen/): `go run ./cmd/ordersd` and
// `go install` must work on a fresh clone without Node or npm, and a
// go:embed of a file that only `go generate` makes would fail to compile
// there. Rebuild it after changing web/ with `go generate ./internal/console`.
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:generate npm --prefix web ci --no-audit --no-fund
//go:generate npm --prefix web run build

//go:embed assets/index.html assets/console.css assets/console.js
var assets embed.FS

// AssetPrefix is the path under which the page's scripts and styles are
// served; the page itself is served at "/".
const AssetPrefix = "/console/"

// contentSecurityPolicy lets the page load only its own files and call
// only its own origin: no inline script, no third party.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded asset, with its validator, and gzipped (the
// bundle shrinks to a third) for browsers that accept it.
type file struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

// Handler serves the console. It answers GET and HEAD of "/" (the page)
// and of AssetPrefix + a file name; Serves reports which requests those are.
type Handler struct {
	files map[string]file // by request path
}

// New returns the console's handler over the embedded assets.
func New() *Handler {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(assets, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		f := file{body: body, gzipped: gz.Bytes(), contentType: mime.TypeByExtension(path.Ext(name)), etag: hex.EncodeToString(sum[:12])}
		base := path.Base(name)
		if base == "index.html" {
			h.files["/"] = f
		} else {
			h.files[AssetPrefix+base] = f
		}
		return nil
	})
	if err != nil {
		panic("console: embedded assets unreadable: " + err.Error()) // a build defect, not a runtime condition
	}
	return h
}

// Serves reports whether r is a request for the console rather than an
// RPC: a GET or HEAD of "/" or of a path under AssetPrefix. RPC paths are
// /<package>.<Service>/<Method>, which never start with AssetPrefix.
func (h *Handler) Serves(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, AssetPrefix)
}

// ServeHTTP serves the page and its files. Every response must be
// revalidated (no-cache, with an ETag), so a new ordersd version's page
// is seen at once, and an unchanged one costs a 304.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Vary", "Accept-Encoding")
	body, etag := f.body, `"`+f.etag+`"`
	if acceptsGzip(r) {
		body, etag = f.gzipped, `"`+f.etag+`-gzip"`
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("ETag", etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.URL.Path == "/" {
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
		hdr.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether the request's Accept-Encoding names gzip
// with a weight above 0.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, weighted := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !weighted {
			return true
		}
		w, err := strconv.ParseFloat(q, 64)
		return err == nil && w > 0
	}
	return false
}
