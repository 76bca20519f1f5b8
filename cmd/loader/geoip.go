package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/reghost/reghost/internal/loader"
)

const geoipHelp = `Downloads MaxMind editions (default GeoLite2-ASN and GeoLite2-Country) and
installs each as the server's ASN or country database. A HEAD request, which
does not count against MaxMind's daily download limit, tells the current
release; nothing is downloaded when it is installed. Otherwise the release's
.sha256 and archive are fetched, the archive checked against it, and the
database inside checked with the server's own code (it opens for its role,
its type is the edition, it answers the probe addresses, it is not older than
the installed one) before it is renamed into place.

With --from-file, installs a local .mmdb (DB-IP, ip-location-db, a private
database) for --kind asn or country, checked the same way.

Credentials: --account-id or MAXMIND_ACCOUNT_ID; the license key from
--license-key-file (whitespace trimmed), MAXMIND_LICENSE_KEY or --license-key
(visible to other users in the process list). They are sent to the base URL's
host only, never to where it redirects, and never logged.
`

type geoipFlags struct {
	commonFlags
	accountID, licenseKey, licenseKeyFile string
	editions                              listFlag
	probes                                listFlag
	baseURL                               string
	fromFile, kind                        string
}

func (c cli) geoip(args []string) int {
	var f geoipFlags
	fs := flag.NewFlagSet("geoip", flag.ContinueOnError)
	f.register(fs)
	f.editions = listFlag{values: []string{"GeoLite2-ASN", "GeoLite2-Country"}}
	f.probes = listFlag{values: []string{"8.8.8.8", "2001:4860:4860::8888"}}
	fs.StringVar(&f.accountID, "account-id", "", "MaxMind account `ID` (default $MAXMIND_ACCOUNT_ID)")
	fs.StringVar(&f.licenseKeyFile, "license-key-file", "", "`file` holding the MaxMind license key")
	fs.StringVar(&f.licenseKey, "license-key", "", "MaxMind license `key` (default $MAXMIND_LICENSE_KEY; prefer --license-key-file)")
	fs.Var(&f.editions, "edition", "MaxMind `edition` to fetch, repeatable; ASN and ISP editions are the asn database, Country and City the country one")
	fs.Var(&f.probes, "probe", "`address` every new database must answer for, repeatable; \"none\" for none; with --from-file the default is none")
	fs.StringVar(&f.baseURL, "base-url", loader.DefaultMaxMindURL, "MaxMind download `URL` (a mirror, or a test server)")
	fs.StringVar(&f.fromFile, "from-file", "", "install this local .mmdb `file` instead of downloading")
	fs.StringVar(&f.kind, "kind", "", "with --from-file: the database's `role`, asn or country")
	setUsage(fs, "loader geoip (--config FILE | --data-dir DIR) [flags]", geoipHelp)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if err := f.check(); err != nil {
		return c.usageError(fs, err.Error())
	}
	probes, err := f.probeAddrs()
	if err != nil {
		return c.usageError(fs, err.Error())
	}
	p, err := resolve(f.commonFlags)
	if err != nil {
		fmt.Fprintf(c.stderr, "loader geoip: %v\n", err)
		return exitFail
	}
	log := c.logger(f.commonFlags)

	if f.fromFile != "" {
		return c.geoipFile(fs, f, p, probes, log)
	}
	if f.kind != "" {
		return c.usageError(fs, "--kind goes with --from-file")
	}
	editions, err := f.editionsFor(p)
	if err != nil {
		return c.usageError(fs, err.Error())
	}
	account, key, err := f.credentials(c.getenv)
	if err != nil {
		return c.usageError(fs, err.Error())
	}
	l, done, err := c.newLoader(f.commonFlags, p, log)
	if err != nil {
		return c.startFailed(fs, err)
	}
	defer done()
	ctx, cancel := c.context(f.commonFlags)
	defer cancel()
	rep, err := l.GeoIP(ctx, loader.GeoIPRequest{
		BaseURL:    f.baseURL,
		AccountID:  account,
		LicenseKey: key,
		Editions:   editions,
		Probes:     probes,
		Force:      f.force,
		DryRun:     f.dryRun,
	})
	return c.finish(log, f.output, rep, err)
}

// geoipFile installs --from-file for --kind.
func (c cli) geoipFile(fs *flag.FlagSet, f geoipFlags, p paths, probes []netip.Addr, log *slog.Logger) int {
	switch {
	case f.kind != loader.RoleASN && f.kind != loader.RoleCountry:
		return c.usageError(fs, "--from-file needs --kind asn or --kind country")
	case f.editions.set:
		return c.usageError(fs, "--edition does not go with --from-file")
	}
	dest, ok := p.geoip[f.kind]
	if !ok {
		return c.usageError(fs, fmt.Sprintf("the config has no geoip.%s file to install to", f.kind))
	}
	l, done, err := c.newLoader(f.commonFlags, p, log)
	if err != nil {
		return c.startFailed(fs, err)
	}
	defer done()
	ctx, cancel := c.context(f.commonFlags)
	defer cancel()
	rep, err := l.GeoIPFile(ctx, loader.GeoIPFileRequest{
		File: f.fromFile, Role: f.kind, Dest: dest, Probes: probes, Force: f.force, DryRun: f.dryRun,
	})
	return c.finish(log, f.output, rep, err)
}

// probeAddrs parses --probe; the defaults apply to downloads only.
func (f *geoipFlags) probeAddrs() ([]netip.Addr, error) {
	if f.fromFile != "" && !f.probes.set {
		return nil, nil
	}
	var out []netip.Addr
	for _, s := range f.probes.values {
		if s == "none" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--probe %q: not an IP address", s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// editionsFor maps the editions to the roles' files. Under --config, the
// default editions are those whose role the config has a file for; an
// edition asked for by name whose role has none is an error.
func (f *geoipFlags) editionsFor(p paths) ([]loader.Edition, error) {
	var out []loader.Edition
	seen := map[string]string{}
	for _, id := range f.editions.values {
		role, ok := loader.EditionRole(id)
		if !ok {
			return nil, fmt.Errorf("--edition %q: not an ASN, ISP, Country, City or Enterprise edition (such as GeoLite2-ASN)", id)
		}
		if other, dup := seen[role]; dup {
			return nil, fmt.Errorf("--edition %s and %s are both %s databases; give one", other, id, role)
		}
		seen[role] = id
		dest, ok := p.geoip[role]
		if !ok {
			if f.editions.set {
				return nil, fmt.Errorf("--edition %s: the config has no geoip.%s file to install it to", id, role)
			}
			continue
		}
		out = append(out, loader.Edition{ID: id, Role: role, Dest: dest})
	}
	if len(out) == 0 {
		return nil, errors.New("the config names no GeoIP database (geoip.asn, geoip.country): nothing to fetch")
	}
	return out, nil
}

// credentials picks the account ID and license key from the flags, the
// key file or the environment. The key is never printed.
func (f *geoipFlags) credentials(getenv func(string) string) (account, key string, err error) {
	account = strings.TrimSpace(f.accountID)
	if account == "" {
		account = strings.TrimSpace(getenv("MAXMIND_ACCOUNT_ID"))
	}
	switch {
	case f.licenseKey != "" && f.licenseKeyFile != "":
		return "", "", errors.New("give --license-key or --license-key-file, not both")
	case f.licenseKeyFile != "":
		b, err := os.ReadFile(f.licenseKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("--license-key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", "", fmt.Errorf("--license-key-file %s is empty", f.licenseKeyFile)
		}
	case f.licenseKey != "":
		key = strings.TrimSpace(f.licenseKey)
	default:
		key = strings.TrimSpace(getenv("MAXMIND_LICENSE_KEY"))
	}
	if account == "" || key == "" {
		return "", "", errors.New("no MaxMind credentials: give --account-id (or MAXMIND_ACCOUNT_ID) and --license-key-file (or MAXMIND_LICENSE_KEY)")
	}
	if strings.ContainsAny(key, "\n\r\x00") || strings.ContainsAny(account, "\n\r\x00:") {
		return "", "", errors.New("the MaxMind account ID or license key has a line break or other character no HTTP header can carry")
	}
	return account, key, nil
}
