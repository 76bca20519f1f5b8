// Command baseline is the load test's yardstick: an Echo server that
// answers /v2/… with a constant redirect and / with a constant host, the
// least any redirector on Echo can do. The redirect is Go's own
// http.Redirect, as registry.k8s.io's server answers, to the registry
// reghost's load test sends most clients to, with the same Cache-Control,
// so that both servers send responses of the same shape and size and the
// difference is what reghost does to decide. bench/run compares reghost
// with it in the same run on the same machine.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/labstack/echo/v5"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	registry := flag.String("registry", "https://registry-1.docker.io", "registry URL to redirect to, with its repository prefix if any, as in reghost's config")
	flag.Parse()
	u, err := url.Parse(*registry)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "baseline: -registry %q is not a registry URL\n", *registry)
		os.Exit(2)
	}
	// As reghost builds it: /v2/ goes before the repository prefix.
	prefix := u.Scheme + "://" + u.Host + "/v2" + strings.TrimSuffix(u.Path, "/")
	e := echo.New()
	e.GET("/", func(c *echo.Context) error { return c.String(http.StatusOK, u.Host) })
	e.GET("/v2/*", func(c *echo.Context) error {
		c.Response().Header().Set("Cache-Control", "private, no-store")
		http.Redirect(c.Response(), c.Request(), prefix+strings.TrimPrefix(c.Request().URL.Path, "/v2"), http.StatusTemporaryRedirect)
		return nil
	})
	srv := &http.Server{Addr: *listen, Handler: e}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}
