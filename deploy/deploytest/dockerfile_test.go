package deploytest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/reghost/reghost/internal/config"
)

// Expected of the image (the task that asked for it, and deploy/README.md).
const (
	finalImagePrefix = "gcr.io/distroless/static-debian12:nonroot"
	serverBinary     = "server" // cmd/server
	loaderBinary     = "loader" // cmd/loader
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Line int
	Cmd  string // upper case
	Args string
}

type stage struct {
	From, Name   string
	Instructions []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions. It
// knows what this repository's Dockerfile uses: comments, parser
// directives, continuation lines.
func parseDockerfile(data []byte) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			if len(f) == 0 {
				return fmt.Errorf("Dockerfile:%d: FROM without an image", in.Line)
			}
			st := stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("Dockerfile:%d: FROM %s: want IMAGE [AS NAME]", in.Line, in.Args)
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			return fmt.Errorf("Dockerfile:%d: %s before FROM", in.Line, in.Cmd)
		}
		s := &stages[len(stages)-1]
		s.Instructions = append(s.Instructions, in)
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	continued := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && continued) {
			continue // comments (and directives); blank lines inside a continuation
		}
		if !continued {
			start = n
		}
		body, more := strings.CutSuffix(line, `\`)
		cur.WriteString(body)
		cur.WriteString(" ")
		continued = more
		if !more {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if continued {
		return nil, fmt.Errorf("Dockerfile: ends inside a continued line")
	}
	return stages, nil
}

// image is what the Dockerfile says about the image it builds.
type image struct {
	Builder, Final string
	// BuildCommand is the go build RUN line, in shell form, without its
	// RUN flags (cache mounts), exactly as the builder's /bin/sh runs it;
	// BuildOut is its -o directory.
	BuildCommand, BuildOut string
	// ContextSources are what the build stage COPYs from the context.
	ContextSources []string
	// BinDir is where the final stage puts BuildOut.
	BinDir     string
	Entrypoint []string
	Cmd        []string
	// ConfigPath is -config in Cmd.
	ConfigPath string
	User       string
	Exposed    []int
	Volumes    []string
	// OwnedDirs are the directories the final stage creates owned by
	// OwnedBy (made with mkdir -p in the builder, copied with
	// COPY --from --chown): a new named volume mounted on one of them
	// takes that owner, on any other path root's.
	OwnedDirs []string
	OwnedBy   string
}

var (
	outFlag = regexp.MustCompile(`(^|\s)-o\s+(\S+)`)
	// mkdirP finds the directories a RUN line makes with mkdir -p.
	mkdirP = regexp.MustCompile(`mkdir\s+-p\s+([^&;|]+)`)
)

// checkDockerfile reads the image out of a Dockerfile and checks it.
// goVersion is go.mod's language version (such as "1.26").
func checkDockerfile(data []byte, goVersion string) (image, problems) {
	var img image
	var p problems
	stages, err := parseDockerfile(data)
	if err != nil {
		p.add("%v", err)
		return img, p
	}
	if len(stages) != 2 {
		p.add("Dockerfile: %d stages; want a golang builder and the final image", len(stages))
		return img, p
	}
	build, final := stages[0], stages[1]
	img.Builder, img.Final = build.From, final.From
	var made []string // directories the builder makes

	// The builder: the Go release go.mod asks for.
	if tag, ok := strings.CutPrefix(build.From, "golang:"); !ok || !(tag == goVersion || strings.HasPrefix(tag, goVersion+".") || strings.HasPrefix(tag, goVersion+"-")) {
		p.add("Dockerfile: builder %q is not golang:%s (go.mod's go %s)", build.From, goVersion, goVersion)
	}
	if build.Name == "" {
		p.add("Dockerfile: the builder stage has no name for COPY --from")
	}
	for _, in := range build.Instructions {
		switch in.Cmd {
		case "COPY":
			if !strings.Contains(in.Args, "--from") {
				f := strings.Fields(in.Args)
				img.ContextSources = append(img.ContextSources, f[:len(f)-1]...)
			}
		case "RUN":
			cmd := in.Args
			for strings.HasPrefix(cmd, "--") { // RUN flags: --mount=..., --network=...
				_, cmd, _ = strings.Cut(cmd, " ")
				cmd = strings.TrimSpace(cmd)
			}
			for _, m := range mkdirP.FindAllStringSubmatch(cmd, -1) {
				made = append(made, strings.Fields(m[1])...)
			}
			if !strings.Contains(cmd, "go build") {
				continue
			}
			if img.BuildCommand != "" {
				p.add("Dockerfile:%d: a second go build; deploytest runs one", in.Line)
			}
			img.BuildCommand = cmd
		}
	}
	switch cmd := img.BuildCommand; {
	case cmd == "":
		p.add("Dockerfile: no go build in the builder stage")
	default:
		if !strings.HasPrefix(cmd, "CGO_ENABLED=0 go build ") {
			p.add("Dockerfile: go build line %q does not start with CGO_ENABLED=0 go build: the distroless static image has no C library", cmd)
		}
		for _, want := range []string{" -trimpath", ` -ldflags="-s -w"`, " ./cmd/..."} {
			if !strings.Contains(cmd, want) {
				p.add("Dockerfile: go build line %q lacks %s", cmd, strings.TrimSpace(want))
			}
		}
		if m := outFlag.FindStringSubmatch(cmd); m == nil || !strings.HasSuffix(m[2], "/") {
			p.add("Dockerfile: go build line %q has no -o DIR/ (a directory, for every command under cmd/)", cmd)
		} else {
			img.BuildOut = m[2]
		}
	}

	// The final image.
	if !strings.HasPrefix(final.From, finalImagePrefix) {
		p.add("Dockerfile: final image %q is not %s", final.From, finalImagePrefix)
	}
	jsonArgs := func(in instruction) []string {
		var v []string
		if err := json.Unmarshal([]byte(in.Args), &v); err != nil {
			p.add("Dockerfile:%d: %s %s is not in exec (JSON) form: the shell form needs /bin/sh, which distroless does not have", in.Line, in.Cmd, in.Args)
		}
		return v
	}
	for _, in := range final.Instructions {
		switch in.Cmd {
		case "COPY":
			f := strings.Fields(in.Args)
			if len(f) == 3 && f[0] == "--from="+build.Name && f[1] == img.BuildOut {
				img.BinDir = f[2]
			}
			if len(f) == 4 && f[0] == "--from="+build.Name && strings.HasPrefix(f[1], "--chown=") {
				img.OwnedBy = strings.TrimPrefix(f[1], "--chown=")
				src, dst := path.Clean(f[2]), path.Clean(f[3])
				for _, m := range made {
					rel, ok := strings.CutPrefix(path.Clean(m), src)
					if !ok || rel != "" && !strings.HasPrefix(rel, "/") {
						continue
					}
					// The directory and every parent up to dst.
					for d := path.Join(dst, rel); ; d = path.Dir(d) {
						if !slices.Contains(img.OwnedDirs, d) {
							img.OwnedDirs = append(img.OwnedDirs, d)
						}
						if d == dst {
							break
						}
					}
				}
			}
		case "ENTRYPOINT":
			img.Entrypoint = jsonArgs(in)
		case "CMD":
			img.Cmd = jsonArgs(in)
		case "USER":
			img.User = in.Args
		case "EXPOSE":
			for _, f := range strings.Fields(in.Args) {
				n, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					p.add("Dockerfile:%d: EXPOSE %s: %v", in.Line, f, err)
				}
				img.Exposed = append(img.Exposed, n)
			}
		case "VOLUME":
			if strings.HasPrefix(in.Args, "[") {
				img.Volumes = append(img.Volumes, jsonArgs(in)...)
			} else {
				img.Volumes = append(img.Volumes, strings.Fields(in.Args)...)
			}
		case "RUN":
			p.add("Dockerfile:%d: RUN in the final stage: distroless has no shell", in.Line)
		}
	}
	if img.BinDir == "" {
		p.add("Dockerfile: the final stage does not COPY --from=%s %s DIR/", build.Name, img.BuildOut)
	}
	if len(img.Entrypoint) != 1 || path.Dir(img.Entrypoint[0])+"/" != img.BinDir || path.Base(img.Entrypoint[0]) != serverBinary {
		p.add("Dockerfile: ENTRYPOINT %q is not [%q]", img.Entrypoint, img.BinDir+serverBinary)
	}
	if cfg, err := parseServerArgs(img.Cmd); err != nil {
		p.add("Dockerfile: CMD: %v", err)
	} else if !path.IsAbs(cfg) {
		p.add("Dockerfile: CMD %q: -config %q is not an absolute path to a mounted config", img.Cmd, cfg)
	} else {
		img.ConfigPath = cfg
	}
	uid, _, _ := strings.Cut(img.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		// Kubernetes' runAsNonRoot can only verify a numeric user.
		p.add("Dockerfile: USER %q is not a numeric non-root uid", img.User)
	}
	for _, port := range []int{8080, 9090} { // config defaults: listen, admin_listen
		if !slices.Contains(img.Exposed, port) {
			p.add("Dockerfile: EXPOSE %v lacks %d", img.Exposed, port)
		}
	}
	if len(img.Volumes) != 1 {
		p.add("Dockerfile: VOLUME %q: want the data directory, once", img.Volumes)
	}
	slices.Sort(img.OwnedDirs)
	for _, v := range img.Volumes {
		if !slices.Contains(img.OwnedDirs, v) || img.OwnedBy != img.User {
			p.add("Dockerfile: VOLUME %s is not a directory the final stage makes owned by USER %s (directories %q owned by %q): a volume there would be root's, and the server could not write to it", v, img.User, img.OwnedDirs, img.OwnedBy)
		}
	}
	return img, p
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`)

// goVersion is go.mod's go directive as major.minor.
func goVersion(t testing.TB) string {
	t.Helper()
	m := goDirective.FindSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

func dockerImage(t testing.TB) image {
	t.Helper()
	img, p := checkDockerfile(readRepoFile(t, dockerfilePath), goVersion(t))
	p.expectNone(t)
	if t.Failed() {
		t.FailNow()
	}
	return img
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	img := dockerImage(t)
	if img.ConfigPath != "/etc/reghost/config.yaml" || !slices.Equal(img.Volumes, []string{"/data"}) || img.User != "65532:65532" {
		t.Errorf("image: config %q, volumes %q, user %q; want /etc/reghost/config.yaml, [/data], 65532:65532 (deploy/README.md)", img.ConfigPath, img.Volumes, img.User)
	}
	if want := []string{"/data", "/data/geo"}; !slices.Equal(img.OwnedDirs, want) {
		t.Errorf("image: directories owned by the user %q; want %q (docker-compose.yml mounts volumes there)", img.OwnedDirs, want)
	}

	broken := []struct {
		name string
		edit edit
		want string
	}{
		{"old Go", edit{old: "FROM golang:1.26 AS build", new: "FROM golang:1.25 AS build"}, `builder "golang:1.25" is not golang:1.26`},
		{"cgo", edit{old: "CGO_ENABLED=0 go build", new: "go build"}, "does not start with CGO_ENABLED=0"},
		{"not stripped", edit{old: `-ldflags="-s -w" `, new: ""}, `lacks -ldflags="-s -w"`},
		{"one command", edit{old: "./cmd/...", new: "./cmd/server"}, "lacks ./cmd/..."},
		{"output file", edit{old: "-o /out/ ", new: "-o /out/server "}, "has no -o DIR/"},
		{"binaries not copied", edit{old: "COPY --from=build /out/ /usr/local/bin/", new: "COPY --from=build /out/ /bin/"}, "ENTRYPOINT"},
		{"base image", edit{old: "gcr.io/distroless/static-debian12:nonroot", new: "debian:12-slim"}, `final image "debian:12-slim"`},
		{"shell form", edit{old: `ENTRYPOINT ["/usr/local/bin/server"]`, new: "ENTRYPOINT /usr/local/bin/server"}, "not in exec (JSON) form"},
		{"unknown flag", edit{old: `CMD ["-config",`, new: `CMD ["-conf",`}, "flag provided but not defined: -conf"},
		{"root", edit{old: "USER 65532:65532", new: "USER root"}, `USER "root" is not a numeric non-root uid`},
		{"admin port", edit{old: "EXPOSE 8080 9090", new: "EXPOSE 8080"}, "lacks 9090"},
		{"shell in final", edit{old: "WORKDIR /\n", new: "WORKDIR /\nRUN mkdir /x\n"}, "RUN in the final stage"},
		{"data owned by root", edit{old: "COPY --from=build --chown=65532:65532 /rootfs/data /data", new: "COPY --from=build /rootfs/data /data"}, "VOLUME /data is not a directory the final stage makes owned by USER"},
		{"data dir not made", edit{old: "RUN mkdir -p /rootfs/data/geo", new: "RUN mkdir -p /rootfs/other"}, "VOLUME /data is not a directory"},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.edit.file = dockerfilePath
			_, p := checkDockerfile(tc.edit.apply(t, readRepoFile(t, dockerfilePath)), goVersion(t))
			p.expect(t, tc.want)
		})
	}
}

// built is the result of running the Dockerfile's go build once.
type built struct {
	context string            // the copy of the build context it ran in
	bins    map[string]string // command name -> binary
	err     error
}

var (
	buildOnce sync.Once
	buildRes  built
)

// buildImageBinaries runs the Dockerfile's go build line, as written, in a
// copy of the build context that .dockerignore leaves, into a scratch
// directory standing in for its -o directory, once for all tests.
func buildImageBinaries(t testing.TB) built {
	t.Helper()
	img := dockerImage(t)
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildRes = func() built {
			ctxDir := filepath.Join(scratch, "context")
			if err := copyContext(root, ctxDir, nil); err != nil {
				return built{err: err}
			}
			out := filepath.Join(scratch, "out") + "/"
			cmd := outFlag.ReplaceAllStringFunc(img.BuildCommand, func(m string) string {
				return strings.Replace(m, img.BuildOut, out, 1)
			})
			c := exec.Command("sh", "-c", cmd)
			c.Dir = ctxDir // the builder's WORKDIR after COPY . .
			// As in the golang image: no GOFLAGS, and the Go in the image.
			c.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
				return strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "GOTOOLCHAIN=")
			}), "GOFLAGS=", "GOTOOLCHAIN=local")
			if msg, err := c.CombinedOutput(); err != nil {
				return built{err: fmt.Errorf("%s (in a copy of the build context): %v\n%s", cmd, err, msg)}
			}
			ents, err := os.ReadDir(out)
			if err != nil {
				return built{err: err}
			}
			b := built{context: ctxDir, bins: map[string]string{}}
			for _, e := range ents {
				b.bins[e.Name()] = filepath.Join(out, e.Name())
			}
			return b
		}()
	})
	if buildRes.err != nil {
		t.Fatal(buildRes.err)
	}
	return buildRes
}

// copyContext copies what `COPY . .` would see of root: every file
// .dockerignore (and extra, patterns in the same syntax) does not exclude.
func copyContext(root, dst string, extra []string) error {
	f, err := os.Open(filepath.Join(root, dockerignorePath))
	if err != nil {
		return err
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", dockerignorePath, err)
	}
	pm, err := patternmatcher.New(append(patterns, extra...))
	if err != nil {
		return fmt.Errorf("%s: %w", dockerignorePath, err)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if excluded {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			return copyFile(p, target)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkStaticBinary checks what the image needs of a binary: no dynamic
// loader or shared libraries (distroless static has none), stripped
// (-s -w), and no path of the directory it was built in (-trimpath).
func checkStaticBinary(file, buildDir string) problems {
	var p problems
	f, err := elf.Open(file)
	if err != nil {
		p.add("%s: %v", file, err)
		return p
	}
	defer f.Close()
	for _, prog := range f.Progs {
		switch prog.Type {
		case elf.PT_INTERP:
			p.add("%s: dynamically linked: it names an interpreter (PT_INTERP)", file)
		case elf.PT_DYNAMIC:
			p.add("%s: dynamically linked: it has a dynamic section (PT_DYNAMIC)", file)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		p.add("%s: needs shared libraries %q (DT_NEEDED)", file, libs)
	}
	if f.Section(".symtab") != nil {
		p.add("%s: has a symbol table: not built with -ldflags=-s", file)
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			p.add("%s: has DWARF section %s: not built with -ldflags=-w", file, s.Name)
			break
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		p.add("%s: %v", file, err)
	} else if bytes.Contains(data, []byte(buildDir)) {
		p.add("%s: holds the build directory %s: not built with -trimpath", file, buildDir)
	}
	return p
}

// mainCommands are the main packages under cmd/, by binary name.
func mainCommands(t testing.TB) []string {
	t.Helper()
	c := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.Dir}}{{end}}`, "./cmd/...")
	c.Dir = repoRoot(t)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/...: %v", err)
	}
	var names []string
	for _, dir := range strings.Fields(string(out)) {
		names = append(names, filepath.Base(dir))
	}
	slices.Sort(names)
	return names
}

// runServer runs the built server with args and returns its output.
func runServer(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	return runBinary(t, serverBinary, args...)
}

// runBinary runs the image's command name with args and returns its
// output.
func runBinary(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := exec.Command(buildImageBinaries(t).bins[name], args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s %q: %v\n%s", name, args, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// checkLoaderArgs runs the built loader with args and --help, which makes
// it exit after parsing them: it fails on a command or flag the loader
// does not define.
func checkLoaderArgs(t testing.TB, where string, args []string) {
	t.Helper()
	if _, err := runBinary(t, loaderBinary, append(slices.Clone(args), "--help")...); err != nil {
		t.Errorf("%s: the loader refuses its arguments: %v", where, err)
	}
}

// checkServerArgs runs the built server with args and
// -print-example-config, which makes it exit after parsing them: it
// fails on a flag the server does not define.
func checkServerArgs(t testing.TB, where string, args []string) {
	t.Helper()
	if _, err := runServer(t, append(slices.Clone(args), "-print-example-config")...); err != nil {
		t.Errorf("%s: the server refuses its arguments: %v", where, err)
	}
}

func TestImageBuild(t *testing.T) {
	t.Parallel()
	img := dockerImage(t)
	b := buildImageBinaries(t)

	t.Run("context", func(t *testing.T) {
		for _, src := range img.ContextSources {
			if _, err := os.Stat(filepath.Join(b.context, src)); err != nil {
				t.Errorf("Dockerfile COPY %s: not in the build context .dockerignore leaves: %v", src, err)
			}
		}
		for _, never := range []string{".git", "testdata", "deploy"} {
			if _, err := os.Stat(filepath.Join(b.context, never)); err == nil {
				t.Errorf("the build context holds %s; .dockerignore should leave it out", never)
			}
		}
	})
	t.Run("commands", func(t *testing.T) {
		var got []string
		for name := range b.bins {
			got = append(got, name)
		}
		slices.Sort(got)
		if want := mainCommands(t); !slices.Equal(got, want) {
			t.Errorf("the build made %q; cmd/ has %q", got, want)
		}
		if _, ok := b.bins[path.Base(img.Entrypoint[0])]; !ok {
			t.Errorf("ENTRYPOINT %s: the build made no such binary", img.Entrypoint[0])
		}
	})
	t.Run("static", func(t *testing.T) {
		for _, bin := range b.bins {
			checkStaticBinary(bin, b.context).expectNone(t)
		}
	})
	t.Run("starts", func(t *testing.T) {
		out, err := runServer(t, "-print-example-config")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, config.Example()) {
			t.Errorf("server -print-example-config printed %d bytes, not the embedded example (%d bytes)", len(out), len(config.Example()))
		}
		checkServerArgs(t, "Dockerfile CMD", img.Cmd)
		if out, err := runBinary(t, loaderBinary, "help"); err != nil || !bytes.Contains(out, []byte("loader geoip")) {
			t.Errorf("loader help: %v\n%s", err, out)
		}
	})
	t.Run("context missing a package", func(t *testing.T) {
		// What the context check above guards against: the same build
		// in a context without a package the server imports fails.
		dir := filepath.Join(t.TempDir(), "context")
		if err := copyContext(repoRoot(t), dir, []string{"internal/config"}); err != nil {
			t.Fatal(err)
		}
		c := exec.Command("go", "build", "-o", os.DevNull, "./cmd/"+serverBinary)
		c.Dir = dir
		c.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "internal/config") {
			t.Errorf("go build without internal/config: %v\n%s", err, out)
		}
	})
	t.Run("refuses unknown flags", func(t *testing.T) {
		if _, err := runServer(t, "-no-such-flag", "-print-example-config"); err == nil {
			t.Error("server -no-such-flag: no error; checkServerArgs would pass anything")
		}
		for _, args := range [][]string{{"cloud", "--no-such-flag"}, {"geoip", "--url", "gcp=https://x"}, {"fetch"}} {
			if _, err := runBinary(t, loaderBinary, append(args, "--help")...); err == nil {
				t.Errorf("loader %q --help: no error; checkLoaderArgs would pass anything", args)
			}
		}
	})
}

// TestCheckStaticBinary shows that checkStaticBinary fails on binaries
// built otherwise: a program built with plain go build (symbols, DWARF,
// its directory) and the shell (dynamically linked).
func TestCheckStaticBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("go", "build", "-o", "hello", ".")
	c.Dir = dir
	c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := checkStaticBinary(filepath.Join(dir, "hello"), dir)
	p.expect(t, "has a symbol table")
	p.expect(t, "has DWARF section")
	p.expect(t, "not built with -trimpath")
	for _, s := range p {
		if strings.Contains(s, "dynamically linked") {
			t.Errorf("a CGO_ENABLED=0 binary: %s", s)
		}
	}

	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if sh, err = filepath.EvalSymlinks(sh); err != nil {
		t.Fatal(err)
	}
	checkStaticBinary(sh, dir).expect(t, "dynamically linked")
}
