// Package deploytest checks reghost's deployment files without Docker or
// a cluster: the Dockerfile (its go build line is run as written, and the
// binaries must be static and start), .dockerignore (the build runs in a
// copy of the context it leaves), docker-compose.yml (loaded with the
// Compose specification's own loader and schema) and the kustomize base in
// deploy/k8s (built with kustomize in-process, every object decoded
// strictly into its Kubernetes API type). Each is checked against what
// reghost itself reads: cmd/server's flags, the config the deployment
// mounts (loaded with internal/config), REGHOST_ADMIN_TOKEN, /healthz and
// /readyz, and deploy/envoy's cluster and listener.
//
// It holds tests only:
//
//	go test -race ./deploy/...
//
// Every check is also run on a broken copy of the file it reads, so a
// check that could no longer fail would fail the tests.
package deploytest
