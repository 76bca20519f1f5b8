package loader

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/reghost/reghost/internal/geo"
)

// GeoIP roles: which lookup a database serves.
const (
	RoleASN     = "asn"
	RoleCountry = "country"
)

// Edition is one MaxMind edition to keep installed.
type Edition struct {
	ID   string // "GeoLite2-ASN"
	Role string // RoleASN or RoleCountry
	Dest string // the file the server reads for that role
}

var editionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// EditionRole is the role an edition serves: ASN and ISP editions give
// ASNs, Country, City and Enterprise editions give countries. ok is false
// for an edition reghost cannot use (Anonymous-IP, Connection-Type, …) or
// a malformed name.
func EditionRole(id string) (role string, ok bool) {
	if !editionRe.MatchString(id) {
		return "", false
	}
	switch {
	case strings.HasSuffix(id, "-ASN"), strings.HasSuffix(id, "-ISP"):
		return RoleASN, true
	case strings.HasSuffix(id, "-Country"), strings.HasSuffix(id, "-City"), strings.HasSuffix(id, "-Enterprise"):
		return RoleCountry, true
	}
	return "", false
}

// GeoIPRequest is one `loader geoip` run against MaxMind.
type GeoIPRequest struct {
	BaseURL    string // "": DefaultMaxMindURL
	AccountID  string
	LicenseKey string
	Editions   []Edition
	// Probes are addresses every new database must answer for; a
	// worldwide database that knows nothing of 8.8.8.8 is broken.
	Probes []netip.Addr
	// Force installs a database older than the installed one.
	Force bool
	// DryRun asks MaxMind (HEAD, which costs nothing) what is new and
	// stops there.
	DryRun bool
	// MaxArchive and MaxDatabase cap the download and the database in
	// it; 0: 1 GiB and 2 GiB.
	MaxArchive, MaxDatabase int64
}

// GeoIPFileRequest installs a local .mmdb (DB-IP, ip-location-db, a
// private database) the way a download is installed.
type GeoIPFileRequest struct {
	File   string
	Role   string
	Dest   string
	Probes []netip.Addr
	Force  bool
	DryRun bool
}

// GeoIPResult is what happened to one database.
type GeoIPResult struct {
	Edition      string    `json:"edition,omitempty"`
	Role         string    `json:"role"`
	File         string    `json:"file"`
	Source       string    `json:"source,omitempty"`
	Action       string    `json:"action"` // see the Action constants
	Release      string    `json:"release,omitempty"`
	Previous     string    `json:"previous_release,omitempty"`
	DatabaseType string    `json:"database_type,omitempty"`
	BuildTime    time.Time `json:"build_time,omitzero"`
	Networks     int       `json:"networks,omitempty"`
	Error        string    `json:"error,omitempty"`
}

// Actions reported for a data set.
const (
	ActionInstalled = "installed"
	ActionUnchanged = "unchanged" // nothing new: nothing fetched or written
	ActionNew       = "new"       // a dry run found something new; nothing written
	ActionFailed    = "failed"    // fetching or checking failed; the installed file is untouched
)

// GeoIPReport is the outcome of a run.
type GeoIPReport struct {
	Results []GeoIPResult `json:"geoip"`
}

// GeoIP brings every edition up to MaxMind's current release. For each it
// asks with a HEAD (which does not count against MaxMind's daily download
// limit) which release is current, and fetches nothing when that release
// is installed and the file is as installed. Otherwise it fetches the
// release's .sha256 and archive, checks, validates and installs. An
// edition that fails leaves its file untouched and the others go on,
// except after a 401 or 403, which no other edition would pass either.
// The error joins every edition's.
func (l *Loader) GeoIP(ctx context.Context, req GeoIPRequest) (GeoIPReport, error) {
	var rep GeoIPReport
	if len(req.Editions) == 0 {
		return rep, errors.New("no edition to fetch")
	}
	if req.BaseURL == "" {
		req.BaseURL = DefaultMaxMindURL
	}
	if req.MaxArchive == 0 {
		req.MaxArchive = defaultMaxArchive
	}
	if req.MaxDatabase == 0 {
		req.MaxDatabase = defaultMaxDatabase
	}
	mm, err := newMaxMind(req.BaseURL, req.AccountID, req.LicenseKey, l.http)
	if err != nil {
		return rep, err
	}
	roles := map[string]string{}
	var dirs []string
	for _, e := range req.Editions {
		if role, ok := EditionRole(e.ID); !ok || role != e.Role || e.Dest == "" {
			return rep, fmt.Errorf("edition %q: not an ASN, Country or City edition, or no file for it", e.ID)
		}
		if other, dup := roles[e.Role]; dup {
			return rep, fmt.Errorf("editions %s and %s both serve the %s lookup; give one", other, e.ID, e.Role)
		}
		roles[e.Role] = e.ID
		dirs = append(dirs, filepath.Dir(e.Dest))
	}

	st := State{Sets: map[string]SetState{}}
	if !req.DryRun {
		var release func()
		st, release, err = l.begin(ctx, dirs)
		if err != nil {
			return rep, err
		}
		defer release()
	} else if st, err = l.state.Load(ctx); err != nil {
		return rep, err
	}

	var errs []error
	for i, e := range req.Editions {
		res, err := l.edition(ctx, mm, req, e, &st)
		if err != nil {
			res.Action, res.Error = ActionFailed, err.Error()
			errs = append(errs, err)
			l.log.Error("GeoIP database not installed; the installed file is untouched", "edition", e.ID, "file", e.Dest, "err", err)
		}
		rep.Results = append(rep.Results, res)
		if errors.Is(err, ErrUnauthorized) || ctx.Err() != nil {
			for _, rest := range req.Editions[i+1:] {
				rep.Results = append(rep.Results, GeoIPResult{Edition: rest.ID, Role: rest.Role, File: rest.Dest,
					Action: ActionFailed, Error: "not tried: " + err.Error()})
			}
			break
		}
	}
	return rep, errors.Join(errs...)
}

func (l *Loader) edition(ctx context.Context, mm *maxmind, req GeoIPRequest, e Edition, st *State) (GeoIPResult, error) {
	res := GeoIPResult{Edition: e.ID, Role: e.Role, File: e.Dest}
	set := Set{"geoip", e.Role}
	rec := st.Sets[set.String()]
	if rec.Edition == e.ID {
		res.Previous = rec.Release
	}
	have := l.present(ctx, set, e.Dest, rec, !req.DryRun)
	rel, err := mm.latest(ctx, e.ID)
	if err != nil {
		return res, err
	}
	res.Release = rel.Date
	if rec.Edition == e.ID && rec.Release == rel.Date && have {
		res.Action = ActionUnchanged
		res.BuildTime = rec.BuildTime
		l.log.Info("GeoIP database is current; nothing downloaded", "edition", e.ID, "release", rel.Date, "file", e.Dest)
		return res, nil
	}
	if old := releaseTime(rec.Release); rec.Edition == e.ID && !old.IsZero() && rec.Release != rel.Date &&
		l.now().Sub(old) > 30*24*time.Hour && strings.HasPrefix(e.ID, "GeoLite") {
		l.log.Warn("the installed GeoLite release is more than 30 days old and superseded; MaxMind's GeoLite licence asks that it be updated or deleted",
			"edition", e.ID, "installed", rec.Release, "current", rel.Date)
	}
	if req.DryRun {
		res.Action = ActionNew
		l.log.Info("GeoIP release available (dry run: not downloaded)", "edition", e.ID, "release", rel.Date, "installed", rec.Release)
		return res, nil
	}
	sum, err := mm.checksum(ctx, e.ID, rel.Date)
	if err != nil {
		return res, err
	}
	l.log.Info("downloading GeoIP database", "edition", e.ID, "release", rel.Date)
	s, _, err := mm.download(ctx, e.ID, rel.Date, sum, e.Dest, req.MaxArchive, req.MaxDatabase)
	if err != nil {
		return res, err
	}
	defer s.remove()
	src := redact(mm.url(e.ID, map[string][]string{"date": {rel.Date}, "suffix": {"tar.gz"}}))
	ds, err := l.checkDatabase(s.path, e.Role, e.Dest, req.Probes, req.Force)
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", e.ID, rel.Date, err)
	}
	res.DatabaseType, res.BuildTime, res.Networks, res.Source = ds.DatabaseType, ds.BuildTime, ds.Networks, src
	if ds.DatabaseType != e.ID && !req.Force {
		return res, fmt.Errorf("%s %s: the archive holds a %q database, not %s; refusing it (--force installs it anyway)", e.ID, rel.Date, ds.DatabaseType, e.ID)
	}
	in := Installed{Set: set, File: e.Dest, SHA256: s.sha256, Size: s.size, Version: rel.Date,
		Source: src, BuildTime: ds.BuildTime}
	extra := SetState{Edition: e.ID, Release: rel.Date, LastModified: rel.LastModified, ArchiveSHA256: sum}
	if err := l.installGeo(ctx, s, in, extra, st); err != nil {
		return res, err
	}
	res.Action = ActionInstalled
	return res, nil
}

// GeoIPFile installs a local database for a role, checked the same way
// as a download.
func (l *Loader) GeoIPFile(ctx context.Context, req GeoIPFileRequest) (GeoIPReport, error) {
	res := GeoIPResult{Role: req.Role, File: req.Dest, Source: req.File}
	rep := GeoIPReport{Results: []GeoIPResult{res}}
	fail := func(err error) (GeoIPReport, error) {
		rep.Results[0].Action, rep.Results[0].Error = ActionFailed, err.Error()
		return rep, err
	}
	if req.Role != RoleASN && req.Role != RoleCountry {
		return fail(fmt.Errorf("kind %q: want asn or country", req.Role))
	}
	abs, err := filepath.Abs(req.File)
	if err != nil {
		return fail(err)
	}
	rep.Results[0].Source = abs
	f, err := os.Open(abs)
	if err != nil {
		return fail(fmt.Errorf("opening the database to install: %w", err))
	}
	defer f.Close()
	if req.DryRun {
		ds, err := l.checkDatabase(abs, req.Role, req.Dest, req.Probes, req.Force)
		if err != nil {
			return fail(err)
		}
		rep.Results[0].Action, rep.Results[0].DatabaseType, rep.Results[0].BuildTime, rep.Results[0].Networks =
			ActionNew, ds.DatabaseType, ds.BuildTime, ds.Networks
		return rep, nil
	}
	st, release, err := l.begin(ctx, []string{filepath.Dir(req.Dest)})
	if err != nil {
		return fail(err)
	}
	defer release()
	set := Set{"geoip", req.Role}
	l.present(ctx, set, req.Dest, st.Sets[set.String()], true) // the build time to compare with
	// Copy first, then check the copy: what is checked is what is
	// installed, whatever happens to the source meanwhile.
	s, err := stage(req.Dest, f, defaultMaxDatabase)
	if err != nil {
		return fail(fmt.Errorf("copying %s: %w", abs, err))
	}
	defer s.remove()
	ds, err := l.checkDatabase(s.path, req.Role, req.Dest, req.Probes, req.Force)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", abs, err))
	}
	r := &rep.Results[0]
	r.DatabaseType, r.BuildTime, r.Networks = ds.DatabaseType, ds.BuildTime, ds.Networks
	if rec := st.Sets[set.String()]; rec.SHA256 == s.sha256 && intact(rec, req.Dest) {
		r.Action = ActionUnchanged // checked again, but not rewritten
		return rep, nil
	}
	in := Installed{Set: set, File: req.Dest, SHA256: s.sha256, Size: s.size,
		Version: ds.DatabaseType + " " + ds.BuildTime.Format(time.RFC3339), Source: abs, BuildTime: ds.BuildTime}
	if err := l.installGeo(ctx, s, in, SetState{Edition: ds.DatabaseType}, &st); err != nil {
		return fail(err)
	}
	r.Action = ActionInstalled
	return rep, nil
}

// checkDatabase opens path with the server's own code for role: it reads
// and verifies the whole file, refuses one with nothing for the role, and
// checks a sample of lookups against maxminddb's own. Then every probe
// must be answered, and the build time must not be older than that of
// the database installed at dest, unless force.
func (l *Loader) checkDatabase(path, role, dest string, probes []netip.Addr, force bool) (geo.DataSet, error) {
	cfg := geo.Config{}
	if role == RoleASN {
		cfg.ASN = path
	} else {
		cfg.Country = path
	}
	db, err := geo.Open(cfg)
	if err != nil {
		return geo.DataSet{}, fmt.Errorf("refused by the server's checks: %w", err)
	}
	defer db.Close()
	sets := db.DataSets()
	if len(sets) != 1 || !sets[0].Loaded {
		return geo.DataSet{}, fmt.Errorf("the server's checks did not load it as the %s database", role)
	}
	ds := sets[0]
	for _, a := range probes {
		var ok bool
		if role == RoleASN {
			_, _, ok = db.ASN(a)
		} else {
			_, _, ok = db.Country(a)
		}
		if !ok {
			return ds, fmt.Errorf("it has no %s data for the probe address %s; is it complete? (--probe sets the addresses)", role, a)
		}
	}
	if old, ok := buildTime(dest); ok && ds.BuildTime.Before(old) {
		if !force {
			return ds, fmt.Errorf("it was built %s, before the installed %s (built %s); refusing to go back (--force installs it anyway)",
				ds.BuildTime.Format(time.RFC3339), dest, old.Format(time.RFC3339))
		}
		l.log.Warn("installing an older database (forced)", "file", dest, "installed_build", old, "new_build", ds.BuildTime)
	}
	return ds, nil
}

// buildTime reads an installed database's build time from its metadata.
func buildTime(path string) (time.Time, bool) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer r.Close()
	return r.Metadata.BuildTime().UTC(), true
}

// installGeo installs a checked database, tells the publishers and records
// it.
func (l *Loader) installGeo(ctx context.Context, s *staged, in Installed, rec SetState, st *State) error {
	if err := s.install(); err != nil {
		return err
	}
	in.InstalledAt = l.now().UTC()
	l.log.Info("GeoIP database installed", "set", in.Set.String(), "file", in.File, "version", in.Version, "build_time", in.BuildTime)
	if err := l.publish(ctx, in); err != nil {
		return err
	}
	rec.File, rec.SHA256, rec.Size, rec.Source, rec.InstalledAt, rec.BuildTime = in.File, in.SHA256, in.Size, in.Source, in.InstalledAt, in.BuildTime
	st.Sets[in.Set.String()] = rec
	return l.record(ctx, *st)
}
