package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/logtest"
)

// When REGHOST_TEST_SERVER_ARGS is set, this test binary is the server:
// TestSIGTERM runs it as a child process, to send it a real signal.
func TestMain(m *testing.M) {
	if args := os.Getenv("REGHOST_TEST_SERVER_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// On SIGTERM the server stops taking connections, answers the request
// its handler is working on (a one-second CPU profile, the admin
// listener's only slow request), and exits 0. (net/http drops a request
// whose header is still arriving when shutdown starts: in flight means
// being answered.)
func TestSIGTERM(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "reghost.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndata_dir: %s\nregistries:\n  - {name: hub, url: \"https://registry-1.docker.io\", default: true}\n",
		dir), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "signal-test-token-0123"
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REGHOST_TEST_SERVER_ARGS=-config "+cfg, "REGHOST_ADMIN_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	defer func() {
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("server output:\n%s", log)
		}
	}()

	// The listeners' addresses, from the line that says it is serving.
	var pub, adm string
	waitFor(t, "the server to start", func() bool {
		log, _ := os.ReadFile(logPath)
		var ok bool
		pub, adm, ok = logtest.ServingAddrs(string(log))
		return ok
	})

	type answer struct {
		status int
		size   int
		err    error
	}
	inFlight := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+adm+"/debug/pprof/profile?seconds=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inFlight <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inFlight <- answer{resp.StatusCode, len(b), err}
	}()
	// In flight: its handler is running, as the server's goroutines show.
	waitFor(t, "the profile to start", func() bool {
		req, _ := http.NewRequest("GET", "http://"+adm+"/debug/pprof/goroutine?debug=2", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "net/http/pprof.Profile(")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the public listener to close", func() bool {
		c, err := net.Dial("tcp", pub)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// Closed while the profile (a second long) was still being taken, and
	// the process still there to finish it.
	select {
	case a := <-inFlight:
		t.Fatalf("the profile was answered (%+v) before the listener closed: not a test of shutdown", a)
	case <-exited:
		t.Fatalf("the server exited (%v) with the profile in flight", waitErr)
	default:
	}
	if a := <-inFlight; a.err != nil || a.status != 200 || a.size == 0 {
		t.Errorf("the request in flight: %+v; want a 200 with the profile", a)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("the server did not exit after SIGTERM")
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// On SIGHUP the server reads its config again and applies what can
// change while serving; a config that does not apply is logged, and the
// old one keeps serving. The process lives on (it used to die, exit
// 129).
func TestSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "reghost.yaml")
	gcpRanges, err := filepath.Abs("../../testdata/cloud/gcp-cloud.json")
	if err != nil {
		t.Fatal(err)
	}
	writeConfig := func(listen, registry string) {
		t.Helper()
		text := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
registries:
  - {name: hub, url: "https://registry-1.docker.io", default: true}
  - {name: quay, url: "https://quay.io"}
cloud_ranges:
  gcp: %s
rules:
  - {match: {cidr: 192.0.2.0/24}, registries: [%s]}
`, listen, dir, gcpRanges, registry)
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("127.0.0.1:0", "hub")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REGHOST_TEST_SERVER_ARGS=-config "+cfgPath, "REGHOST_ADMIN_TOKEN=hup-test-token-0123456")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	log := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	defer func() {
		if t.Failed() {
			t.Logf("server output:\n%s", log())
		}
	}()
	var pub string
	waitFor(t, "the server to start", func() bool {
		var ok bool
		pub, _, ok = logtest.ServingAddrs(log())
		return ok
	})
	host := func() string {
		req, _ := http.NewRequest("GET", "http://"+pub+"/", nil)
		req.Header.Set("X-Real-IP", "192.0.2.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := host(); got != "registry-1.docker.io" {
		t.Fatalf("before the reload: %q", got)
	}

	// A new rule applies; a new listen address needs a restart; the data
	// files are read again, though they did not change.
	loads := func() int { return strings.Count(log(), `"msg":"cloud ranges reloaded","provider":"gcp"`) }
	loadsBefore := loads() // 0: the first load is not logged, and polling reloads only a changed file
	writeConfig("127.0.0.1:1", "quay")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new rule to decide", func() bool { return host() == "quay.io" })
	waitFor(t, "the restart warning", func() bool {
		return strings.Contains(log(), "some settings need a restart") && strings.Contains(log(), `"keys":"listen"`)
	})
	waitFor(t, "the GCP ranges to be read again", func() bool { return loads() > loadsBefore })

	// A config that does not apply: logged, and the old one serves.
	writeConfig("127.0.0.1:0", "nonesuch")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bad config to be refused", func() bool { return strings.Contains(log(), "config not reloaded") })
	if got := host(); got != "quay.io" {
		t.Errorf("after a refused config: %q", got)
	}
	select {
	case <-exited:
		t.Fatalf("the server exited after SIGHUP: %v", waitErr)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("the server did not exit after SIGTERM")
	}
}
