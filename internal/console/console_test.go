package console_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ordersd/ordersd/internal/console"

	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// The HTTP port serves the console's page and files to GET and HEAD, and
// goes on serving every RPC: a plain JSON POST (taken for a Connect unary
// call) and a Connect call to the same paths. Unknown console paths are
// 404, and a revalidation of an unchanged file costs a 304.
func TestHTTPPortServesConsoleAndAPI(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{HTTP: true, Console: true})
	base := "http://" + n.HTTPAddr()

	res := get(t, base+"/", nil)
	body := read(t, res)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `<script defer src="console/console.js">`) {
		t.Fatalf("GET /: %s\n%s", res.Status, body)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-cache",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; script-src 'self'",
	} {
		if got := res.Header.Get(k); !strings.HasPrefix(got, want) {
			t.Errorf("GET /: %s = %q, want %q…", k, got, want)
		}
	}

	var js string
	for path, ctype := range map[string]string{"/console/console.js": "text/javascript", "/console/console.css": "text/css"} {
		res := get(t, base+path, nil)
		body := read(t, res)
		if path == "/console/console.js" {
			js = body
		}
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) || len(body) < 1000 {
			t.Fatalf("GET %s: %s, %s, %d bytes", path, res.Status, res.Header.Get("Content-Type"), len(body))
		}
		etag := res.Header.Get("ETag")
		again := get(t, base+path, map[string]string{"If-None-Match": etag})
		read(t, again)
		if etag == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %q: %s, want 304", path, etag, again.Status)
		}
	}

	// Browsers get the bundle gzipped.
	res = get(t, base+"/console/console.js", map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	zipped := read(t, res)
	if res.Header.Get("Content-Encoding") != "gzip" || len(zipped) > 60_000 {
		t.Errorf("GET /console/console.js accepting gzip: Content-Encoding %q, %d bytes", res.Header.Get("Content-Encoding"), len(zipped))
	}
	zr, err := gzip.NewReader(strings.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, []byte(js)) {
		t.Errorf("the gzipped bundle does not unzip to the bundle: %v", err)
	}

	res = get(t, base+"/console/nothing.js", nil)
	read(t, res)
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /console/nothing.js: %s, want 404", res.Status)
	}

	// The API on the same port: a curl-style JSON POST, and the health
	// service the console's Health page calls.
	for _, c := range []struct{ path, body, want string }{
		{"/orders.v1.OrderService/CreateOrder", `{"customerId":"c1","currencyCode":"EUR","items":[{"sku":"S","quantity":"1","unitPriceMinor":"5"}]}`, `"status":"ORDER_STATUS_CREATED"`},
		{"/grpc.health.v1.Health/Check", `{}`, `{"status":"SERVING"}`},
	} {
		res, err := http.Post(base+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if body := read(t, res); res.StatusCode != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %s %s, want %s", c.path, res.Status, body, c.want)
		}
	}
	// A GET of an RPC path is not the console's: the API answers it.
	res = get(t, base+"/orders.v1.OrderService/GetOrder", nil)
	if body := read(t, res); strings.Contains(body, "<html") {
		t.Errorf("GET of an RPC path served the console: %s", body)
	}
}

// Without --console the port serves the API only: "/" is not the page.
func TestConsoleOff(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{HTTP: true})
	res := get(t, "http://"+n.HTTPAddr()+"/", nil)
	if body := read(t, res); res.StatusCode == http.StatusOK || strings.Contains(body, "console.js") {
		t.Fatalf("GET / with the console off: %s\n%s", res.Status, body)
	}
	res = get(t, "http://"+n.HTTPAddr()+"/console/console.js", nil)
	if body := read(t, res); res.StatusCode == http.StatusOK {
		t.Fatalf("GET /console/console.js with the console off: %s, %d bytes", res.Status, len(body))
	}
}

func get(t *testing.T, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func read(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                     false,
		"gzip":                 true,
		"gzip, deflate, br":    true,
		"br;q=1.0, gzip;q=0.8": true,
		"gzip;q=0":             false,
		"identity":             false,
		"GZIP":                 true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/console/console.js", nil)
		r.Header.Set("Accept-Encoding", header)
		w := httptest.NewRecorder()
		console.New().ServeHTTP(w, r)
		if got := w.Header().Get("Content-Encoding") == "gzip"; got != want {
			t.Errorf("Accept-Encoding %q: gzipped %v, want %v", header, got, want)
		}
	}
}
