package app

import (
	"fmt"
	"net"
	"net/http"

	"github.com/reghost/reghost/internal/certs"
)

// setupTLS turns the listeners the config asks for to HTTPS: their
// servers get a TLS config that takes the current certificate at every
// handshake, and a.tlsRun what keeps files current (certs.Reloader.Run),
// for Serve to run. An ACME certificate is autocert's to renew (acme.go). A listener without TLS settings keeps plain HTTP.
//
// HTTP/2 stays on over TLS: http.Server.ServeTLS sets it up because the
// configs offer "h2" (certs.Reloader.TLSConfig, autocert's TLSConfig)
// and the servers leave TLSNextProto and Protocols at their defaults.
func (a *App) setupTLS() error {
	reg := a.metrics.Registry()
	if t := a.cfg.TLS; t.CertFile != "" {
		r, err := certs.New(certs.Config{CertFile: t.CertFile, KeyFile: t.KeyFile,
			Listener: "public", Logger: a.log, Registerer: reg})
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		a.public.TLSConfig = r.TLSConfig()
		a.tlsRun = append(a.tlsRun, r.Run)
	} else if t.ACME.On() {
		tc, err := acmeTLS(t.ACME, a.log, reg)
		if err != nil {
			return err
		}
		a.public.TLSConfig = tc
	}
	if t := a.cfg.Admin.TLS; t.On() {
		r, err := certs.New(certs.Config{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
			Listener: "admin", Logger: a.log, Registerer: reg})
		if err != nil {
			return fmt.Errorf("admin.tls: %w", err)
		}
		a.admin.TLSConfig = r.TLSConfig()
		a.tlsRun = append(a.tlsRun, r.Run)
	}
	return nil
}

// serveOn serves srv on ln, over TLS when srv has a TLS config.
func serveOn(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
	}
	return srv.Serve(ln)
}
