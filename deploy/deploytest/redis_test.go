package deploytest

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// What the deployments promise of the Redis they run for the shared
// store (internal/store/REDIS.md: noeviction, and persistence on the
// primary).
const (
	redisDefaultPort = 6379
	// redisImageDir is the official image's WORKDIR and VOLUME, where
	// redis-server keeps its files unless told --dir.
	redisImageDir = "/data"
	// redisUser is the official image's redis user: run as it, the
	// image's entry point starts redis-server without switching users.
	redisUser = 999
)

// redisPatchRelease is an official Redis image pinned to a patch release
// (a variant such as -alpine, and a digest, allowed): redis:8 or
// redis:latest changes under a running deployment.
var redisPatchRelease = regexp.MustCompile(`^redis:\d+\.\d+\.\d+(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$`)

// redisServer is what a redis-server command line sets.
type redisServer struct {
	// Args are the arguments after redis-server, as given.
	Args []string
	// Options are the --name value options (a value of several words
	// joined by spaces, as redis-server reads them).
	Options map[string]string
	Port    int
	Dir     string
}

// parseRedisCommand reads a redis-server command line: redis-server, or
// arguments starting with "-" (the official image's entry point then
// runs redis-server with them), followed by --name value options. A
// config file argument is refused: its settings would be out of sight.
func parseRedisCommand(cmd []string) (redisServer, error) {
	rs := redisServer{Options: map[string]string{}, Port: redisDefaultPort, Dir: redisImageDir}
	args := cmd
	switch {
	case len(args) == 0:
		return rs, fmt.Errorf("no command: redis-server would run with its defaults (maxmemory-policy noeviction? appendonly no)")
	case args[0] == "redis-server":
		args = args[1:]
	case !strings.HasPrefix(args[0], "-"):
		return rs, fmt.Errorf("command %q does not run redis-server", cmd)
	}
	rs.Args = slices.Clone(args)
	name := ""
	for _, a := range args {
		if n, ok := strings.CutPrefix(a, "--"); ok {
			name = strings.ToLower(n)
			if _, dup := rs.Options[name]; dup {
				return rs, fmt.Errorf("--%s given twice", name)
			}
			rs.Options[name] = ""
			continue
		}
		if name == "" {
			return rs, fmt.Errorf("argument %q before any --option (a config file?): give every setting as an option", a)
		}
		rs.Options[name] = strings.TrimSpace(rs.Options[name] + " " + a)
	}
	if p, ok := rs.Options["port"]; ok {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return rs, fmt.Errorf("--port %q is not a port", p)
		}
		rs.Port = n
	}
	if d, ok := rs.Options["dir"]; ok {
		rs.Dir = d
	}
	return rs, nil
}

// testRedisArgs are rs's arguments for a redis-server a test starts,
// which chooses where it listens and keeps its files itself.
func testRedisArgs(rs redisServer) []string {
	var args []string
	for i := 0; i < len(rs.Args); i++ {
		if a := rs.Args[i]; a == "--port" || a == "--dir" || a == "--bind" {
			i++
			continue
		}
		args = append(args, rs.Args[i])
	}
	return args
}

// checkRedisServer checks that a Redis for the shared store neither
// evicts keys nor loses them in a restart. where prefixes the problems.
func checkRedisServer(p *problems, where string, rs redisServer) {
	if v := rs.Options["maxmemory-policy"]; v != "noeviction" {
		p.add("%s: --maxmemory-policy %q; want noeviction: an evicted override or version is lost without a word", where, v)
	}
	if v := rs.Options["appendonly"]; v != "yes" {
		p.add("%s: --appendonly %q; want yes: a Redis that restarts empty makes every replica refuse writes until an operator restores", where, v)
	}
}

// checkStoreURL checks that store, a reghost config's store:, is a
// standalone Redis URL for host (one of hosts) and port.
func checkStoreURL(store string, hosts []string, port int) error {
	if store == "" {
		return fmt.Errorf(`store is ""; the replicas would each keep their own overrides`)
	}
	u, err := url.Parse(store)
	if err != nil {
		return fmt.Errorf("store %q: %v", store, err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("store %q is not a redis:// URL", store)
	}
	if q := u.Query(); q.Has("addr") || q.Has("master_name") {
		return fmt.Errorf("store %q names a Cluster or Sentinel; the deployment runs one Redis", store)
	}
	h, p := u.Hostname(), u.Port()
	if p == "" {
		p = strconv.Itoa(redisDefaultPort)
	}
	if !slices.Contains(hosts, h) || p != strconv.Itoa(port) {
		return fmt.Errorf("store %q goes to %s; the Redis is %s", store, net.JoinHostPort(h, p), net.JoinHostPort(strings.Join(hosts, "|"), strconv.Itoa(port)))
	}
	return nil
}

func TestRedisHelpers(t *testing.T) {
	t.Parallel()
	t.Run("parseRedisCommand", func(t *testing.T) {
		t.Parallel()
		rs, err := parseRedisCommand([]string{"redis-server", "--appendonly", "yes", "--save", "3600", "1", "--port", "6380"})
		if err != nil || rs.Options["save"] != "3600 1" || rs.Port != 6380 || rs.Dir != redisImageDir || rs.Options["appendonly"] != "yes" {
			t.Errorf("parseRedisCommand: %+v, %v", rs, err)
		}
		for _, tc := range []struct {
			cmd  []string
			want string
		}{
			{nil, "no command"},
			{[]string{"sh", "-c", "redis-server"}, "does not run redis-server"},
			{[]string{"redis-server", "/etc/redis.conf"}, "before any --option"},
			{[]string{"redis-server", "--port", "x"}, `--port "x"`},
			{[]string{"--appendonly", "yes", "--appendonly", "no"}, "given twice"},
		} {
			if _, err := parseRedisCommand(tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseRedisCommand(%q): %v; want an error about %q", tc.cmd, err, tc.want)
			}
		}
	})
	t.Run("checkStoreURL", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			store, want string
		}{
			{"redis://redis:6379/0", ""},
			{"redis://redis/0", ""},
			{"rediss://redis:6379/0", ""},
			{"", `store is ""`},
			{"redis://cache:6379/0", "goes to cache:6379"},
			{"redis://redis:6380/0", "goes to redis:6380"},
			{"unix:///run/redis.sock", "not a redis:// URL"},
			{"redis://redis:6379?addr=redis2:6379", "Cluster or Sentinel"},
		} {
			err := checkStoreURL(tc.store, []string{"redis"}, 6379)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkStoreURL(%q): %v; want %q", tc.store, err, tc.want)
			}
		}
	})
	t.Run("redisPatchRelease", func(t *testing.T) {
		t.Parallel()
		for img, want := range map[string]bool{"redis:8.8.3-alpine": true, "redis:8.8.3": true, "redis:8.8-alpine": false, "redis:latest": false, "redis": false, "valkey/valkey:8.1.0": false} {
			if redisPatchRelease.MatchString(img) != want {
				t.Errorf("redisPatchRelease(%q) = %v", img, !want)
			}
		}
	})
}
