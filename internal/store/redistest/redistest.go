// Package redistest starts real redis-server processes for tests: a
// standalone server, a three-node Cluster, and a primary with a replica
// and a Sentinel. Each runs on a free port in the test's temporary
// directory, without persistence unless asked, and is killed when the
// test ends (or, through the parent-death signal, when the test binary
// dies). It never touches a Redis it did not start.
//
// redis-server and redis-cli must be installed (Debian: redis-server,
// redis-tools); a test that needs them fails, not skips, without them.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	Port int
	Dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	run int // how many times it was started, for its log's name
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Option changes how a server is started.
type Option func(*config)

type config struct {
	args      []string
	persist   bool
	maxPort   int
	noWait    bool
	dir       string
	sentinel  bool
	confLines []string
}

// Args adds redis-server command-line arguments ("--maxmemory", "10mb").
func Args(args ...string) Option { return func(c *config) { c.args = append(c.args, args...) } }

// Persistent keeps the RDB snapshot settings to the given args (e.g.
// Args("--save", "3600 1")) instead of turning persistence off.
func Persistent() Option { return func(c *config) { c.persist = true } }

func maxPort(p int) Option { return func(c *config) { c.maxPort = p } }

// Start starts a standalone server and waits until it answers PING.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return start(t, opts...)
}

func start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	need(t, "redis-server")
	s := &Server{t: t, Dir: c.dir}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	if c.sentinel {
		s.args = nil
	} else {
		s.args = []string{"--bind", "127.0.0.1", "--dir", s.Dir, "--protected-mode", "no"}
		if !c.persist {
			s.args = append(s.args, "--save", "", "--appendonly", "no")
		}
		s.args = append(s.args, c.args...)
	}
	// A port found free may be taken before the server binds it: try a
	// few.
	var err error
	for range 5 {
		s.Port = freePort(t, c.maxPort)
		if c.sentinel {
			conf := filepath.Join(s.Dir, "sentinel.conf")
			lines := append([]string{"port " + strconv.Itoa(s.Port), "bind 127.0.0.1", "dir " + s.Dir, "protected-mode no"}, c.confLines...)
			if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s.args = []string{conf, "--sentinel"}
		}
		if err = s.launch(); err == nil {
			if c.noWait {
				break
			}
			if err = s.waitUp(10*time.Second, true); err == nil {
				break
			}
			s.Kill()
		}
	}
	if err != nil {
		t.Fatalf("redistest: starting redis-server: %v", err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

func need(t testing.TB, bin string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("redistest: %s is not installed (Debian: apt-get install redis-server redis-tools): %v", bin, err)
	}
}

// freePort returns a port nothing listens on, at most max (0: any).
func freePort(t testing.TB, max int) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if (max == 0 || p <= max) && p != 6379 {
			return p
		}
	}
	t.Fatalf("redistest: no free port at most %d", max)
	return 0
}

func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run++
	args := s.args
	if len(args) == 0 || !strings.HasSuffix(args[0], ".conf") {
		args = append([]string{"--port", strconv.Itoa(s.Port)}, args...)
	}
	cmd := exec.Command("redis-server", args...)
	logf, err := os.Create(filepath.Join(s.Dir, fmt.Sprintf("redis-%d-%d.log", s.Port, s.run)))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close()
	s.cmd = cmd
	return nil
}

// waitUp waits until the server accepts connections and, with ready,
// answers PING (not LOADING).
func (s *Server) waitUp(d time.Duration, ready bool) error {
	deadline := time.Now().Add(d)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	var err error
	for time.Now().Before(deadline) {
		s.mu.Lock()
		exited := s.cmd == nil || s.cmd.ProcessState != nil
		s.mu.Unlock()
		if exited {
			return fmt.Errorf("redis-server on port %d exited; see its log in %s", s.Port, s.Dir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err = c.Ping(ctx).Err()
		cancel()
		var reply redis.Error // the server answered, if only NOAUTH
		if err == nil || errors.As(err, &reply) && (!ready || !redis.IsLoadingError(err)) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on port %d not up within %s: %v", s.Port, d, err)
}

// WaitReady waits until the server answers PING rather than LOADING.
func (s *Server) WaitReady() {
	s.t.Helper()
	if err := s.waitUp(60*time.Second, true); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
}

// Stop ends the server as an operator would (SIGTERM: it saves first if
// it persists) and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Restart starts a stopped or killed server again on its port and
// directory, and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.StartAgain()
	s.WaitReady()
}

// StartAgain starts a stopped server again and returns as soon as it
// accepts connections, maybe still LOADING its data.
func (s *Server) StartAgain() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.waitUp(30*time.Second, false); err != nil {
		s.t.Fatal(err)
	}
}

// Client returns a client of the server, closed when the test ends. It
// does not retry.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Do runs one command on the server and fails the test if it fails.
func (s *Server) Do(args ...any) any {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, ReadTimeout: time.Minute})
	defer c.Close()
	v, err := c.Do(context.Background(), args...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		s.t.Fatalf("redistest: %v on port %d: %v", args, s.Port, err)
	}
	return v
}

// Flush empties the server (FLUSHALL): this test server only.
func (s *Server) Flush() { s.Do("FLUSHALL") }

// Cluster is three primaries without replicas, all slots assigned.
type Cluster struct {
	Nodes []*Server
}

// URL is a go-redis Cluster URL (a seed node and addr= for the others).
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr() + "?"
	for i, n := range c.Nodes[1:] {
		if i > 0 {
			u += "&"
		}
		u += "addr=" + n.Addr()
	}
	return u
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// StartCluster starts three cluster nodes, creates the cluster with
// redis-cli, and waits until every node says cluster_state:ok. Ports
// stay at most 55535: the cluster bus listens on port+10000.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	need(t, "redis-cli")
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, start(t, maxPort(55535), Args("--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				t.Fatalf("redistest: cluster node %s not ok: %v %s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// Sentinel is a primary, its replica, and one Sentinel watching them
// (quorum 1) under the name MasterName, set to fail over quickly: the
// primary counts as down after 500 ms.
type Sentinel struct {
	Primary, Replica, Sentinel *Server
	MasterName                 string
}

// URL is the go-redis Sentinel URL.
func (s *Sentinel) URL() string {
	return "redis://" + s.Sentinel.Addr() + "/0?master_name=" + s.MasterName
}

// StartSentinel starts the three, and waits until the Sentinel knows the
// replica (it can fail over only to a replica it knows).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: "reghost-test"}
	s.Primary = start(t)
	s.Replica = start(t, Args("--replicaof", "127.0.0.1", strconv.Itoa(s.Primary.Port),
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"))
	s.Primary.Do("CONFIG", "SET", "repl-diskless-sync-delay", "0")
	s.Sentinel = start(t, func(c *config) {
		c.sentinel = true
		c.confLines = []string{
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", s.MasterName, s.Primary.Port),
			"sentinel down-after-milliseconds " + s.MasterName + " 500",
			"sentinel failover-timeout " + s.MasterName + " 2000",
			"sentinel parallel-syncs " + s.MasterName + " 1",
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr(), MaxRetries: -1})
	defer sc.Close()
	for {
		reps, err := sc.Replicas(context.Background(), s.MasterName).Result()
		if err == nil && len(reps) == 1 && reps[0]["flags"] == "slave" {
			if info := s.Replica.Do("INFO", "replication").(string); strings.Contains(info, "master_link_status:up") {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the Sentinel does not know the replica: %v %v", reps, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CurrentPrimary asks the Sentinel for the primary's address.
func (s *Sentinel) CurrentPrimary() string {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr(), MaxRetries: -1})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
	if err != nil {
		return ""
	}
	return net.JoinHostPort(addr[0], addr[1])
}
