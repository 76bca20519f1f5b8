package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/reghost/reghost/internal/atomicfile"
	"github.com/reghost/reghost/internal/config"
)

// adminTokens are the admin tokens by name: "admin" (see adminToken),
// and each of admin.tokens, read from its file.
func adminTokens(cfg *config.Config, getenv func(string) string, log *slog.Logger) (map[string]string, error) {
	admin, err := adminToken(cfg, getenv, log)
	if err != nil {
		return nil, err
	}
	tokens := map[string]string{"admin": admin}
	seen := map[string]string{admin: "admin"}
	for i, nt := range cfg.Admin.Tokens {
		t, from, err := namedToken(nt, getenv)
		if err != nil {
			return nil, fmt.Errorf("admin.tokens[%d] (%s): %w", i, nt.Name, err)
		}
		if err := checkToken(t); err != nil {
			return nil, fmt.Errorf("admin.tokens[%d] (%s): %s: %w", i, nt.Name, from, err)
		}
		if other, dup := seen[t]; dup {
			return nil, fmt.Errorf("admin.tokens[%d] (%s): the same token as %s's; each name needs a token of its own", i, nt.Name, other)
		}
		seen[t] = nt.Name
		tokens[nt.Name] = t
	}
	return tokens, nil
}

// namedToken reads nt's token from its file or its environment
// variable, and says which, for messages.
func namedToken(nt config.NamedToken, getenv func(string) string) (token, from string, err error) {
	if nt.Env != "" {
		return strings.TrimSpace(getenv(nt.Env)), "environment variable " + nt.Env, nil
	}
	b, err := os.ReadFile(nt.File)
	return strings.TrimSpace(string(b)), nt.File, err
}

// adminToken is, in order: the token file, REGHOST_ADMIN_TOKEN, the
// token generated on an earlier start, or one generated now and written
// to data_dir/admin-token (mode 0600). Its path is logged, never the
// token.
func adminToken(cfg *config.Config, getenv func(string) string, log *slog.Logger) (string, error) {
	if f := cfg.Admin.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("admin.token_file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if err := checkToken(t); err != nil {
			return "", fmt.Errorf("admin.token_file: %s: %w", f, err)
		}
		return t, nil
	}
	if t := strings.TrimSpace(getenv("REGHOST_ADMIN_TOKEN")); t != "" {
		if err := checkToken(t); err != nil {
			return "", fmt.Errorf("REGHOST_ADMIN_TOKEN: %w", err)
		}
		return t, nil
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // logged: where to find it, wherever the reader stands
	}
	t, err := readGeneratedToken(path)
	if err == nil {
		log.Info("no admin token configured; using the one generated before", "file", path)
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("no admin token configured, and the one generated before is unusable; generating another", "file", path, "err", err)
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	t = hex.EncodeToString(b[:])
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := writeTokenFile(path, t); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	log.Warn("no admin token configured; generated one", "file", path)
	return t, nil
}

// checkToken refuses a token too short to be secret, or one with a
// control character (a newline inside a token file, say), which no
// Authorization header can carry: every admin call would then fail.
// The token itself is never in the error.
func checkToken(t string) error {
	if len(t) < 16 {
		return errors.New("token shorter than 16 characters")
	}
	for i := 0; i < len(t); i++ {
		if (t[i] < ' ' && t[i] != '\t') || t[i] == 0x7f {
			return fmt.Errorf("token has a control character at byte %d, which no Authorization header can carry", i)
		}
	}
	return nil
}

// readGeneratedToken reads a token written by writeTokenFile on an
// earlier start, so that restarts keep it. A file others can read, or
// anything but a regular file, is refused: its token may not be secret.
func readGeneratedToken(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("readable by others (mode %v)", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if err := checkToken(t); err != nil {
		return "", err
	}
	return t, nil
}

// writeTokenFile writes t to a new file, readable by the owner only, and
// renames it to path: whatever was at path (a file of another mode, a
// symbolic link) is replaced, never written through.
func writeTokenFile(path, t string) error {
	return atomicfile.Write(path, []byte(t+"\n"), 0o600)
}
