// Package deploytest checks reghost's deployment files without Docker or
// a cluster: the Dockerfile (its go build line is run as written, and the
// binaries must be static and start), .dockerignore (the build runs in a
// copy of the context it leaves), docker-compose.yml (loaded with the
// Compose specification's own loader and schema) and the kustomize base and
// overlays in deploy/k8s (built with kustomize in-process, every object
// decoded strictly into its Kubernetes API type). Each is checked against
// what reghost itself reads: cmd/server's and cmd/loader's flags, the
// config the deployment mounts (loaded with internal/config), the Redis
// store's URL and what it needs of Redis, REGHOST_ADMIN_TOKEN, /healthz and
// /readyz, and deploy/envoy's cluster and listener. What compose runs is
// also run, without Docker: a real redis-server, the loaders and both
// replicas, as compose configures them.
//
// It holds tests only, in a module of its own:
//
//	cd deploy && go test -race ./...
//
// Every check is also run on a broken copy of the file it reads, so a
// check that could no longer fail would fail the tests.
package deploytest
