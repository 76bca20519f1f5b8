// Package apptest runs a real, in-process reghost for other packages'
// tests: the e2e pull tests, the Envoy filter tests, the deploy checks.
package apptest

import (
	"testing"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/config"
)

// Start runs reghost with the config text until the test ends; listen
// addresses in it should be 127.0.0.1:0. The admin token comes from
// nowhere but the config, so each test gets its own generated one.
func Start(t testing.TB, yamlText string) *app.App {
	t.Helper()
	cfg, err := config.Parse([]byte(yamlText), t.Name()+".yaml")
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, yamlText)
	}
	a, err := app.New(cfg, app.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Listen(); err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(t.Context()) }()
	// t.Context is cancelled before cleanups run: Serve is stopping.
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("reghost Serve: %v", err)
		}
	})
	return a
}
