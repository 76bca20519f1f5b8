package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
)

// BenchmarkHandler measures a direct-mode redirect and the original
// "GET /" contract through the whole Echo stack (client address,
// decision, metrics, access log) without the network, against Echo
// handlers answering a constant redirect with http.Redirect and a
// constant host: the same baseline as bench/run, in the same run.
func BenchmarkHandler(b *testing.B) {
	base := echo.New()
	base.GET("/", func(c *echo.Context) error { return c.String(http.StatusOK, "registry-1.docker.io") })
	base.GET("/v2/*", func(c *echo.Context) error {
		http.Redirect(c.Response(), c.Request(), "https://registry-1.docker.io"+c.Request().URL.Path, http.StatusTemporaryRedirect)
		return nil
	})
	reghost, err := NewPublic(PublicConfig{Engine: testEngine(b), AccessLog: NewAccessLogHandler(io.Discard),
		ClientIP: ClientIPConfig{TrustedProxies: testTrusted}})
	if err != nil {
		b.Fatal(err)
	}
	for _, route := range []struct {
		name, path string
		code       int
	}{{"v2", "/v2/pause/manifests/3.9", http.StatusTemporaryRedirect}, {"root", "/", http.StatusOK}} {
		for _, bc := range []struct {
			name string
			h    http.Handler
		}{{"baseline", base}, {"reghost", reghost}} {
			b.Run(route.name+"/"+bc.name, func(b *testing.B) {
				req := httptest.NewRequest("GET", route.path, nil)
				req.RemoteAddr = "127.0.0.1:5555"
				req.Header.Set("X-Real-Ip", "89.160.20.112")
				b.ReportAllocs()
				w := &discardWriter{h: http.Header{}}
				for b.Loop() {
					clear(w.h)
					bc.h.ServeHTTP(w, req)
					if w.code != route.code {
						b.Fatal(w.code)
					}
				}
			})
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handlers and not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
