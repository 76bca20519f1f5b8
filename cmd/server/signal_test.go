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
	pub, adm := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "reghost.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "listen: %q\nadmin_listen: %q\ndata_dir: %s\nregistries:\n  - {name: hub, url: \"https://registry-1.docker.io\", default: true}\n",
		pub, adm, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "signal-test-token-0123"
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
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
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("server output:\n%s", log)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + pub + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}

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
	time.Sleep(300 * time.Millisecond) // the profile is being taken
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		c, err := net.Dial("tcp", pub)
		if err != nil {
			break // the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
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

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
