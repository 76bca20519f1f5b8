// Command baseline is the load test's yardstick: an Echo server that
// answers /v2/… with a constant redirect and / with a constant host, the
// least any redirector on Echo can do. The redirect is Go's own
// http.Redirect, as registry.k8s.io's server answers, so both servers send
// the same response (Location, a small HTML body for GET) and the
// difference is what reghost does to decide. bench/run compares reghost
// with it in the same run on the same machine.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/labstack/echo/v5"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	flag.Parse()
	e := echo.New()
	const host = "registry-1.docker.io"
	e.GET("/", func(c *echo.Context) error { return c.String(http.StatusOK, host) })
	e.GET("/v2/*", func(c *echo.Context) error {
		http.Redirect(c.Response(), c.Request(), "https://"+host+c.Request().URL.Path, http.StatusTemporaryRedirect)
		return nil
	})
	srv := &http.Server{Addr: *listen, Handler: e}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}
