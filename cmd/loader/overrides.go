package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/atomicfile"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/httpapi"
	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

const overridesUsage = `Usage:
  loader overrides export --config FILE [--file OUT]
  loader overrides import --config FILE --file IN [--format json|csv] [--dry-run]

Backs up and restores the overrides of the store the server's config names:
the embedded store (data_dir/reghost.db) or the Redis of store:. Export
writes the JSON that GET /api/v1/overrides gives; import replaces the whole
set, as PUT /api/v1/overrides does, after validating every override against
the config's registries. A running server holds the embedded store: go
through its admin API instead. Servers sharing a Redis apply an import at
once. Drains are not part of the set.

Run 'loader overrides export --help' or 'loader overrides import --help'
for the flags.
`

const exportHelp = `Writes every stored override, expired ones included, as
{"version": …, "overrides": […]}: the JSON GET /api/v1/overrides gives, which
'loader overrides import' and PUT /api/v1/overrides restore as it is. To
--file (written whole, then renamed into place) or to stdout.
`

const importHelp = `Makes the overrides in --file the whole set, in one step (the store's
Replace): overrides not in the file are removed. Every override is validated
first against the config's registries, as the admin API validates it; one
that is not valid fails the import, naming it, and nothing changes.

JSON: {"version"?: …, "overrides": […]}, as export and GET /api/v1/overrides
write it, or a bare list […]. CSV: a header row, then one override a row:

  id,kind,value,region,registries,expires_at,note
  lab,cidr,192.0.2.0/24,,hub;k8s,,the lab network
  ,country,SE,,hub,2030-01-01T00:00:00Z,

  kind        cidr, asn, cloud, country or continent (required)
  value       what it matches: 192.0.2.0/24, 15169, aws, SE, EU (required)
  region      with kind cloud: the provider's region, such as us-east-2
  registries  registry names, in order of preference, separated by ';' (required)
  id, expires_at, note, created_by, created_at: as in the API; times in RFC 3339
  An empty id makes one up; an empty created_at is the time of the import.

Columns may come in any order; an unknown column is refused. Lines starting
with '#' are comments. --dry-run validates and reports what would be added,
removed and changed, and writes nothing (the embedded store is opened
read-only).
`

// overridesFlags are the flags of overrides export and import.
type overridesFlags struct {
	config, file, format string
	output               string
	logFormat            string
	level                slog.Level
	dryRun               bool
	timeout              time.Duration
}

func (f *overridesFlags) register(fs *flag.FlagSet, importing bool) {
	fs.StringVar(&f.config, "config", "", "the server's config `file`: its store, data_dir and registries (required)")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format` on stderr: text or json (default: text on a terminal, else json)")
	fs.TextVar(&f.level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.DurationVar(&f.timeout, "timeout", time.Minute, "give up after this `duration`")
	if !importing {
		fs.StringVar(&f.file, "file", "", "write the backup to this `file` (default: stdout)")
		return
	}
	fs.StringVar(&f.file, "file", "", "the `file` to import (required)")
	fs.StringVar(&f.format, "format", "", "the file's `format`: json or csv (default: csv for a .csv file, else json)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "validate and report what would change, write nothing")
	fs.StringVar(&f.output, "output", "text", "report `format` on stdout: text or json")
}

// check validates the flags; the message is a usage error.
func (f *overridesFlags) check(importing bool) error {
	switch {
	case f.config == "":
		return errors.New("give --config FILE: the server's config names the store and the registries")
	case importing && f.file == "":
		return errors.New("give --file FILE: the JSON or CSV to import")
	case f.format != "" && f.format != "json" && f.format != "csv":
		return fmt.Errorf("--format %q: want json or csv", f.format)
	case importing && f.output != "text" && f.output != "json":
		return fmt.Errorf("--output %q: want text or json", f.output)
	case f.logFormat != "" && f.logFormat != "text" && f.logFormat != "json":
		return fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	case f.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	if f.format == "" {
		f.format = "json"
		if strings.EqualFold(filepath.Ext(f.file), ".csv") {
			f.format = "csv"
		}
	}
	return nil
}

func (f *overridesFlags) common() commonFlags {
	return commonFlags{logFormat: f.logFormat, level: f.level, timeout: f.timeout}
}

func (c cli) overrides(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, overridesUsage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "export":
		return c.overridesExport(rest)
	case "import":
		return c.overridesImport(rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, overridesUsage)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "loader overrides: unknown command %q\n\n%s", cmd, overridesUsage)
		return exitUsage
	}
}

func (c cli) overridesExport(args []string) int {
	var f overridesFlags
	fs := flag.NewFlagSet("overrides export", flag.ContinueOnError)
	f.register(fs, false)
	setUsage(fs, "loader overrides export --config FILE [--file OUT]", exportHelp)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if err := f.check(false); err != nil {
		return c.usageError(fs, err.Error())
	}
	log := c.logger(f.common())
	ctx, cancel := c.context(f.common())
	defer cancel()
	err := c.export(ctx, f, log)
	if err != nil {
		fmt.Fprintf(c.stderr, "loader overrides export: %v\n", err)
		return exitFail
	}
	return exitOK
}

func (c cli) export(ctx context.Context, f overridesFlags, log *slog.Logger) error {
	cfg, err := config.Load(f.config)
	if err != nil {
		return err
	}
	engine, err := policy.New(policy.Config{Registries: cfg.Registries, Rules: cfg.Rules})
	if err != nil {
		return fmt.Errorf("%s: %w", f.config, err)
	}
	svc, closeStore, err := openService(ctx, cfg, engine, log, true)
	if err != nil {
		return storeError(cfg, err, "GET")
	}
	defer closeStore()
	ovs, v, err := svc.List(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, httpapi.NewOverrideSet(ovs, v, svc.Now())); err != nil {
		return err
	}
	if f.file == "" {
		_, err = c.stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(f.file, buf.Bytes()); err != nil {
		return err
	}
	log.Info("exported the overrides", "file", f.file, "overrides", len(ovs), "version", v.String())
	return nil
}

// importReport is what an import did, or would do (DryRun).
type importReport struct {
	File      string          `json:"file"`
	Format    string          `json:"format"`
	Overrides int             `json:"overrides"` // in the file
	Added     []string        `json:"added"`
	Removed   []string        `json:"removed"`
	Changed   []changedFields `json:"changed"`
	Unchanged int             `json:"unchanged"`
	DryRun    bool            `json:"dry_run"`
	// NoStore: there is no embedded store yet; the import creates it.
	NoStore bool `json:"no_store,omitempty"`
	// Version is the store's after the import; absent on a dry run.
	Version *store.Version `json:"version,omitempty"`
}

// changedFields is an override the import replaces, and what differs.
type changedFields struct {
	ID     string   `json:"id"`
	Fields []string `json:"fields"`
}

// reportListMax is how many IDs the text report lists per kind of change.
const reportListMax = 20

func (r *importReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %d overrides\n", r.File, r.Format, r.Overrides)
	list := func(what string, ids []string) {
		fmt.Fprintf(&b, "  %-10s %d", what, len(ids))
		for i, id := range ids {
			if i == reportListMax {
				fmt.Fprintf(&b, " … and %d more", len(ids)-i)
				break
			}
			sep := ", "
			if i == 0 {
				sep = "  "
			}
			b.WriteString(sep + id)
		}
		b.WriteString("\n")
	}
	list("added", r.Added)
	list("removed", r.Removed)
	changed := make([]string, len(r.Changed))
	for i, c := range r.Changed {
		changed[i] = c.ID + " (" + strings.Join(c.Fields, ", ") + ")"
	}
	list("changed", changed)
	fmt.Fprintf(&b, "  %-10s %d\n", "unchanged", r.Unchanged)
	switch {
	case r.DryRun && r.NoStore:
		b.WriteString("dry run: nothing was written; there is no store yet, and the import would create it\n")
	case r.DryRun:
		b.WriteString("dry run: nothing was written\n")
	case r.Version != nil:
		fmt.Fprintf(&b, "imported: the store is at version %s\n", r.Version)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (c cli) overridesImport(args []string) int {
	var f overridesFlags
	fs := flag.NewFlagSet("overrides import", flag.ContinueOnError)
	f.register(fs, true)
	setUsage(fs, "loader overrides import --config FILE --file IN [--format json|csv] [--dry-run]", importHelp)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if err := f.check(true); err != nil {
		return c.usageError(fs, err.Error())
	}
	log := c.logger(f.common())
	ctx, cancel := c.context(f.common())
	defer cancel()
	rep, err := c.importOverrides(ctx, f, log)
	if err != nil {
		fmt.Fprintf(c.stderr, "loader overrides import: %v\n", err)
		return exitFail
	}
	return c.finish(log, f.output, rep, nil)
}

// who is the loader's name in the audit trail, and the created_by of
// overrides that give none.
const who = "loader"

func (c cli) importOverrides(ctx context.Context, f overridesFlags, log *slog.Logger) (*importReport, error) {
	// The file first: a bad one fails before the store is touched.
	ovs, lines, err := readOverrides(f.file, f.format)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	engine, err := policy.New(policy.Config{Registries: cfg.Registries, Rules: cfg.Rules})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.config, err)
	}
	prepared, err := overrides.PrepareSet(engine, time.Now(), who, ovs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; nothing was changed", f.file, atLine(err, lines))
	}
	rep := &importReport{File: f.file, Format: f.format, Overrides: len(ovs), DryRun: f.dryRun}

	svc, closeStore, err := openService(ctx, cfg, engine, log, f.dryRun)
	switch {
	case f.dryRun && cfg.Store == "" && errors.Is(err, fs.ErrNotExist):
		rep.NoStore = true
		rep.diff(nil, prepared)
		return rep, nil
	case err != nil:
		return nil, storeError(cfg, err, "PUT")
	}
	defer closeStore()
	current, _, err := svc.List(ctx)
	if err != nil {
		return nil, err
	}
	rep.diff(current, prepared)
	if f.dryRun {
		return rep, nil
	}
	v, err := svc.Replace(ctx, who, prepared)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; nothing was changed", f.file, atLine(err, lines))
	}
	rep.Version = &v
	log.Info("imported the overrides", "file", f.file, "overrides", len(prepared), "version", v.String(),
		"added", len(rep.Added), "removed", len(rep.Removed), "changed", len(rep.Changed))
	return rep, nil
}

// readOverrides reads the file to import. lines, for CSV, is the line
// of each override, for errors; nil for JSON, whose errors name the
// override by its place in the list.
func readOverrides(path, format string) (ovs []rules.Override, lines []int, err error) {
	data, err := readLimited(path, maxImport)
	if err != nil {
		return nil, nil, err
	}
	if format == "csv" {
		ovs, lines, err = parseCSV(data)
	} else if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
		ovs, err = httpapi.DecodeOverrideList(data)
	} else {
		ovs, err = httpapi.DecodeOverrideSet(data)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return ovs, lines, nil
}

// maxImport bounds the file, as the admin API bounds PUT
// /api/v1/overrides: a hundred thousand overrides are about 20 MB.
const maxImport = 256 << 20

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, limit>>20)
	}
	return data, nil
}

// openService opens the config's store and the overrides service on it,
// with an engine that knows the config's registries (the service
// validates against them). readOnly opens the embedded store read-only.
func openService(ctx context.Context, cfg *config.Config, engine *policy.Engine, log *slog.Logger, readOnly bool) (*overrides.Service, func(), error) {
	st, err := app.OpenStore(cfg, log, readOnly)
	if err != nil {
		return nil, nil, err
	}
	svc, err := overrides.New(ctx, overrides.Config{Store: st, Engine: engine, Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return svc, func() { st.Close() }, nil
}

// storeError explains a store that cannot be opened. The embedded store
// is locked by a running server: the way in is then that server's admin
// API (method GET to export, PUT to import).
func storeError(cfg *config.Config, err error, method string) error {
	if !errors.Is(err, store.ErrLocked) {
		return err
	}
	return fmt.Errorf("%w\n"+
		"A running reghost server holds the embedded store, and bbolt lets one process have it at a time. "+
		"Go through that server's admin API instead (admin_listen %s): %s /api/v1/overrides, with the same JSON as this command "+
		"(the README's HTTP API section); or stop the server and run this again",
		err, cfg.AdminListen, method)
}

// atLine points a validation error of a CSV file's override at its line
// and column.
func atLine(err error, lines []int) error {
	ie, ok := errors.AsType[*overrides.ItemError](err)
	if !ok || ie.Index >= len(lines) {
		return err
	}
	field, _, _ := strings.Cut(ie.Err.Error(), ": ")
	return fmt.Errorf("line %d, column %s: %w", lines[ie.Index], columnOf(field), ie.Err)
}

// diff fills in what replacing current with next adds, removes and
// changes.
func (r *importReport) diff(current, next []rules.Override) {
	r.Added, r.Removed, r.Changed = []string{}, []string{}, []changedFields{}
	byID := make(map[string]rules.Override, len(current))
	for _, o := range current {
		byID[o.ID] = o
	}
	for _, o := range next {
		old, ok := byID[o.ID]
		if !ok {
			r.Added = append(r.Added, o.ID)
			continue
		}
		delete(byID, o.ID)
		if fields := differences(old, o); len(fields) > 0 {
			r.Changed = append(r.Changed, changedFields{o.ID, fields})
		} else {
			r.Unchanged++
		}
	}
	for id := range byID {
		r.Removed = append(r.Removed, id)
	}
	slices.Sort(r.Added)
	slices.Sort(r.Removed)
	slices.SortFunc(r.Changed, func(a, b changedFields) int { return strings.Compare(a.ID, b.ID) })
}

// differences names the fields in which a and b differ, as the API
// names them.
func differences(a, b rules.Override) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("match", a.Match != b.Match)
	add("registries", !slices.Equal(a.Registries, b.Registries))
	add("expires_at", !a.ExpiresAt.Equal(b.ExpiresAt))
	add("note", a.Note != b.Note)
	add("created_by", a.CreatedBy != b.CreatedBy)
	add("created_at", !a.CreatedAt.Equal(b.CreatedAt))
	return out
}

// writeFileAtomic writes data to a new file beside path, flushes it and
// renames it over path: a reader never sees half a backup.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o640)
}
