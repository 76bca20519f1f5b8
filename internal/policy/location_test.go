package policy

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/rules"
)

func mustTarget(t testing.TB, raw string) Target {
	t.Helper()
	tg, err := newTarget(rules.Registry{Name: "r", URL: raw})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestLocation(t *testing.T) {
	t.Parallel()
	const gar = "https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images"
	tests := []struct {
		name, base, path, query string
		want                    string
		err                     error
	}{
		{"prefix inserted after /v2", gar, "/v2/pause/manifests/3.9", "", "https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/manifests/3.9", nil},
		{"query kept", gar, "/v2/pause/manifests/3.9", "n=1", "https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/manifests/3.9?n=1", nil},
		{"tag list paging", gar, "/v2/pause/tags/list", "n=100&last=3.9", "https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/tags/list?n=100&last=3.9", nil},
		{"trailing slash in base", gar + "/", "/v2/pause/blobs/sha256:abc", "", "https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/blobs/sha256:abc", nil},
		{"api root keeps no prefix", gar, "/v2/", "", "https://us-west1-docker.pkg.dev/v2/", nil},
		{"api root without slash", gar, "/v2", "", "https://us-west1-docker.pkg.dev/v2/", nil},
		{"no prefix", "https://registry-1.docker.io", "/v2/library/alpine/manifests/3", "", "https://registry-1.docker.io/v2/library/alpine/manifests/3", nil},
		{"port kept", "http://127.0.0.1:5000", "/v2/a/b", "", "http://127.0.0.1:5000/v2/a/b", nil},
		{"outside /v2 unchanged", gar, "/favicon.ico", "", "https://us-west1-docker.pkg.dev/favicon.ico", nil},
		{"escapes kept", gar, "/v2/a%3Ab/manifests/x%2B1", "", "https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/a%3Ab/manifests/x%2B1", nil},
		{"escaped CR LF", gar, "/v2/x%0d%0aSet-Cookie:%20a=b", "", "", ErrInvalidPath},
		{"escaped NUL", gar, "/v2/x%00", "", "", ErrInvalidPath},
		{"escaped DEL", gar, "/v2/x%7F", "", "", ErrInvalidPath},
		{"escaped slash", gar, "/v2/a%2Fb/manifests/x", "", "", ErrInvalidPath},
		{"dot dot and escaped slash", gar, "/v2/..%2f..%2fevil", "", "", ErrInvalidPath},
		{"escaped backslash", gar, "/v2/..%5cevil", "", "", ErrInvalidPath},
		{"CR LF in path", gar, "/v2/x\r\nSet-Cookie: a=b", "", "", ErrInvalidPath},
		{"LF in query", gar, "/v2/x", "a\nb", "", ErrInvalidQuery},
		{"scheme-relative", gar, "//evil.example/v2/x", "", "", ErrInvalidPath},
		{"no leading slash", "https://h", "@evil.example/v2/x", "", "", ErrInvalidPath},
		{"dot dot", gar, "/v2/../../evil", "", "", ErrInvalidPath},
		{"encoded dot dot", gar, "/v2/%2e%2E/x", "", "", ErrInvalidPath},
		{"dot", gar, "/v2/./x", "", "", ErrInvalidPath},
		{"backslash", gar, "/v2/\\evil.example", "", "", ErrInvalidPath},
		{"space", gar, "/v2/a b", "", "", ErrInvalidPath},
		{"bad escape", gar, "/v2/a%zz", "", "", ErrInvalidPath},
		{"truncated escape", gar, "/v2/a%2", "", "", ErrInvalidPath},
		{"fragment", gar, "/v2/a", "x#y", "", ErrInvalidQuery},
		{"non-ASCII", gar, "/v2/é", "", "", ErrInvalidPath},
		{"empty", gar, "", "", "", ErrInvalidPath},
		{"too long", gar, "/v2/" + strings.Repeat("a", maxPathLen), "", "", ErrInvalidPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := mustTarget(t, tt.base)
			got, err := tg.Location(tt.path, tt.query)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("Location(%q, %q) = %q, %v; want %q, %v", tt.path, tt.query, got, err, tt.want, tt.err)
			}
		})
	}
}

// FuzzLocation checks that no path or query moves a redirect to another
// host, adds a header line, or climbs out of the repository prefix.
func FuzzLocation(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/manifests/b", "//evil", "/v2/../x", "/v2/%2e%2e/x", "@evil", "/v2/a\r\nX: y", "/\\evil"} {
		f.Add(s, "n=1")
	}
	tg := mustTarget(f, "https://reg.example:8443/pre/fix")
	f.Fuzz(func(t *testing.T, path, query string) {
		loc, err := tg.Location(path, query)
		if err != nil {
			if loc != "" {
				t.Fatalf("location %q with error %v", loc, err)
			}
			return
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("Location(%q, %q) = %q does not parse: %v", path, query, loc, err)
		}
		if u.Scheme != "https" || u.Host != "reg.example:8443" || u.User != nil {
			t.Fatalf("Location(%q, %q) = %q leaves the registry", path, query, loc)
		}
		if strings.ContainsAny(loc, "\r\n\x00 ") {
			t.Fatalf("Location(%q, %q) = %q has a control character", path, query, loc)
		}
		if strings.HasPrefix(path, "/v2/") && len(path) > 4 && !strings.HasPrefix(u.EscapedPath(), "/v2/pre/fix/") {
			t.Fatalf("Location(%q, %q) = %q is outside the prefix", path, query, loc)
		}
		if u.RawQuery != query {
			t.Fatalf("Location(%q, %q) = %q lost the query", path, query, loc)
		}
	})
}
