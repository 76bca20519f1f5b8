package web

import "net/http"

// routes maps every page. Pages behind signedIn need a session; the
// sign-in page and the static files do not.
func (h *handler) routes() {
	m := http.NewServeMux()
	h.mux = m
	m.HandleFunc("GET "+Prefix, h.redirect(Prefix+"/overrides"))
	m.HandleFunc("GET "+Prefix+"/{$}", h.redirect(Prefix+"/overrides"))
	m.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(h.static)))
	m.HandleFunc("GET "+Prefix+"/sign-in", h.signInPage)
	m.HandleFunc("POST "+Prefix+"/sign-in", h.signIn)
	m.HandleFunc("POST "+Prefix+"/sign-out", h.signOut)

	m.Handle("GET "+Prefix+"/overrides", h.signedIn(h.overrides))
	m.Handle("GET "+Prefix+"/overrides/new", h.signedIn(h.newOverride))
	m.Handle("POST "+Prefix+"/overrides/new", h.signedIn(h.postNewOverride))
	m.Handle("GET "+Prefix+"/overrides/{id}/edit", h.signedIn(h.editOverride))
	m.Handle("POST "+Prefix+"/overrides/{id}/edit", h.signedIn(h.postEditOverride))
	m.Handle("GET "+Prefix+"/overrides/{id}/delete", h.signedIn(h.deleteOverride))
	m.Handle("POST "+Prefix+"/overrides/{id}/delete", h.signedIn(h.postDeleteOverride))
	m.Handle("GET "+Prefix+"/registries", h.signedIn(h.registries))
	m.Handle("POST "+Prefix+"/registries/{name}/drain", h.signedIn(h.drain))
	m.Handle("POST "+Prefix+"/registries/{name}/undrain", h.signedIn(h.undrain))
	m.Handle("GET "+Prefix+"/explain", h.signedIn(h.explain))
	m.Handle("GET "+Prefix+"/data", h.signedIn(h.data))
	m.Handle("GET "+Prefix+"/traffic", h.signedIn(h.traffic))
	m.Handle("GET "+Prefix+"/audit", h.signedIn(h.audit))
	m.Handle("GET "+Prefix+"/", h.signedIn(h.notFound))
}

func (h *handler) redirect(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusSeeOther) }
}
