package certs

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run watches the certificate, key and client CA files and reloads them
// when their contents change, until ctx is done. Every file's directory is
// watched, not the file (a rename over a file replaces the inode a file
// watch would follow), and, when the file is a symlink, its target's
// directory too; the files are also re-read every Config.Poll, for
// changes that no event announced. Without file system events at all (no
// inotify, or its limit reached) Run only polls, and says so.
//
// When Run returns, nothing it started is still running.
func (r *Reloader) Run(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	var w *fsnotify.Watcher
	err := errNoEvents
	if !r.noEvents {
		w, err = fsnotify.NewWatcher()
	}
	if err != nil {
		r.log.Warn("tls: cannot watch certificate files; checking them periodically instead",
			"every", r.cfg.Poll, "err", err)
	} else {
		defer w.Close() // stops its goroutine before returning
		events, errs = w.Events, w.Errors
	}

	var paths []string
	for _, p := range []string{r.cfg.CertFile, r.cfg.KeyFile, r.cfg.ClientCAFile} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	names := map[string]bool{}
	warned := map[string]bool{}
	// watch (re)adds the directories: one may appear later, and a
	// symlink's target, and so its directory, changes with every
	// Kubernetes update.
	watch := func() {
		if w == nil {
			return
		}
		var dirs []string
		add := func(p string) {
			names[filepath.Base(p)] = true
			if d := filepath.Dir(p); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
		for _, p := range paths {
			add(filepath.Clean(p))
			if target, err := filepath.EvalSymlinks(p); err == nil {
				add(target)
			}
		}
		watched := w.WatchList()
		for _, d := range dirs {
			if slices.Contains(watched, d) {
				continue
			}
			if err := w.Add(d); err != nil {
				if !warned[d] {
					r.log.Warn("tls: cannot watch certificate directory; checking it periodically instead",
						"dir", d, "every", r.cfg.Poll, "err", err)
					warned[d] = true
				}
				continue
			}
			warned[d] = false
		}
	}

	s := runState{last: r.loaded}
	watch()
	var settle, confirm <-chan time.Time // non-nil while a check is pending
	// Anything that changed between New and Run.
	if r.check(&s, false) {
		confirm = time.After(r.confirm)
	}

	poll := time.NewTicker(r.cfg.Poll)
	defer poll.Stop()
	for {
		confirming := false
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			base := filepath.Base(ev.Name)
			// "..data" and friends: the kubelet updates Secret and
			// ConfigMap volumes by swapping a symlink.
			if !names[base] && !strings.HasPrefix(base, "..") {
				continue
			}
			if settle == nil {
				settle = time.After(r.debounce)
			}
			continue
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.log.Warn("tls: file watch error; checking the files now", "err", err)
		case <-settle:
			settle = nil
		case <-confirm:
			confirm, confirming = nil, true
		case <-poll.C:
			watch()
			r.checkExpired(&s)
		}
		// A refusal held back is confirmed once the files have stayed
		// the same for r.confirm: every new refusal starts the wait again.
		if r.check(&s, confirming) {
			confirm = time.After(r.confirm)
		}
	}
}

// errNoEvents stands for fsnotify failing, in tests.
var errNoEvents = errors.New("file system events turned off")

// runState is what Run remembers between checks.
type runState struct {
	last      files  // what the last attempt read
	pending   bool   // last was refused and the refusal is not reported yet
	reported  string // the last refusal reported, "" after a success
	expiredOK bool   // the serving certificate's expiry has been logged
}

// check reads the files and, when they changed since the last attempt
// (or confirming a refusal), builds and swaps a new pair. A refusal is
// first held back, and reported when a check with confirm set finds the
// same files still refused: a pair replaced one file at a time fails in
// between. check returns true when it holds a refusal back.
func (r *Reloader) check(s *runState, confirm bool) (holding bool) {
	in := r.read()
	if in.same(s.last) && !(confirm && s.pending) {
		if r.checked != nil {
			r.checked(false, nil)
		}
		return false
	}
	p, err := r.build(in, true)
	if r.checked != nil {
		defer r.checked(true, err)
	}
	changed := !in.same(s.last)
	s.last = in
	if err == nil {
		r.swap(p)
		s.pending, s.expiredOK = false, false
		r.metrics.ok.Inc()
		r.metrics.failing.Set(0)
		attrs := certAttrs(p.cert.Leaf)
		if s.reported != "" {
			attrs = append(attrs, "resolves", s.reported)
		}
		s.reported = ""
		r.log.Info("tls: certificate reloaded", attrs...)
		return false
	}
	if changed {
		s.pending = true
		r.log.Debug("tls: new certificate files refused for now; trying again in case they are still being replaced",
			"in", r.confirm, "err", err)
		return true
	}
	s.pending = false
	r.metrics.fail.Inc()
	r.metrics.failing.Set(1)
	if msg := err.Error(); msg != s.reported {
		s.reported = msg
		r.log.Error("tls: new certificate files refused; the previous certificate is still served",
			append(certAttrs(r.Leaf()), "err", err)...)
	}
	return false
}

// checkExpired logs, once, that the serving certificate has expired.
func (r *Reloader) checkExpired(s *runState) {
	leaf := r.Leaf()
	if s.expiredOK || !r.now().After(leaf.NotAfter) {
		return
	}
	s.expiredOK = true
	r.log.Error("tls: the certificate being served has expired; clients will refuse it: replace it", certAttrs(leaf)...)
}
