// Package e2e holds end-to-end tests that run a real reghost in-process
// between real registry clients and real registries: go-containerregistry
// pulls through reghost's direct mode from go-containerregistry's
// in-memory registries, so that a test passes only when a real OCI client
// lands on the registry the rules chose, with the repository prefix,
// query string and client-address rules applied on the way. skopeo
// (Debian's package, which scripts/test installs) pulls through reghost
// over HTTPS, from registries that serve HTTPS too, verifying every
// certificate.
//
// The package has no code of its own; everything is in its _test files.
package e2e
