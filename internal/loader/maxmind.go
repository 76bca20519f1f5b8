package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// DefaultMaxMindURL is where MaxMind serves database downloads.
const DefaultMaxMindURL = "https://download.maxmind.com"

// ErrUnauthorized is wrapped when MaxMind refuses the credentials (401)
// or the edition (403): no other edition will do better in this run.
var ErrUnauthorized = errors.New("refused by MaxMind")

// ErrLimit is wrapped when MaxMind answers 429: the account's downloads
// for the day are spent.
var ErrLimit = errors.New("MaxMind's daily download limit is reached")

// maxmind speaks MaxMind's download protocol:
//
//	HEAD {base}/geoip/databases/{edition}/download?suffix=tar.gz
//	     → Content-Disposition: attachment; filename={edition}_{date}.tar.gz
//	       Last-Modified: … (a HEAD does not count against the daily limit)
//	GET  …/download?date={date}&suffix=tar.gz.sha256 → "{hex}  {edition}_{date}.tar.gz"
//	GET  …/download?date={date}&suffix=tar.gz        → 302 to object storage → the archive
//
// with HTTP basic auth (account ID, license key) sent to {base}'s origin
// only.
type maxmind struct {
	base *url.URL
	auth *credentials
	http *fetcher
}

func newMaxMind(base, accountID, licenseKey string, f *fetcher) (*maxmind, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("MaxMind base URL %q: want http(s)://host[/path]", redact(base))
	}
	if accountID == "" || licenseKey == "" {
		return nil, errors.New("no MaxMind account ID or license key: give --account-id and --license-key-file (or MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY)")
	}
	return &maxmind{
		base: u,
		auth: &credentials{scheme: u.Scheme, host: u.Host, user: accountID, pass: licenseKey},
		http: f,
	}, nil
}

// release is what a HEAD says about an edition's current release.
type release struct {
	Date         string // YYYYMMDD
	LastModified string // as sent
}

func (m *maxmind) url(edition string, q url.Values) string {
	u := m.base.JoinPath("geoip", "databases", edition, "download")
	u.RawQuery = q.Encode()
	return u.String()
}

// latest asks (HEAD) which release of edition is current.
func (m *maxmind) latest(ctx context.Context, edition string) (release, error) {
	var rel release
	err := m.http.do(ctx, request{
		method: http.MethodHead,
		url:    m.url(edition, url.Values{"suffix": {"tar.gz"}}),
		auth:   m.auth,
		label:  edition + " (HEAD)",
	}, func(resp *http.Response, _ io.Reader) error {
		rel.LastModified = resp.Header.Get("Last-Modified")
		date, err := releaseDate(edition, resp.Header)
		rel.Date = date
		return err
	})
	return rel, m.explain(edition, err)
}

var dateRe = regexp.MustCompile(`^[0-9]{8}$`)

// releaseDate reads the release from the archive's name in
// Content-Disposition ("GeoLite2-ASN_20261201.tar.gz"), or, from a mirror
// that sends none, from Last-Modified.
func releaseDate(edition string, h http.Header) (string, error) {
	if cd := h.Get("Content-Disposition"); cd != "" {
		_, params, err := mime.ParseMediaType(cd)
		if err != nil {
			return "", fmt.Errorf("unreadable Content-Disposition %q: %w", cd, err)
		}
		name := params["filename"]
		date, ok := strings.CutPrefix(name, edition+"_")
		date, ok2 := strings.CutSuffix(date, ".tar.gz")
		if !ok || !ok2 || !dateRe.MatchString(date) {
			return "", fmt.Errorf("the download is named %q, not %s_YYYYMMDD.tar.gz; is the edition or the base URL wrong?", name, edition)
		}
		return date, nil
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		t, err := http.ParseTime(lm)
		if err == nil {
			return t.UTC().Format("20060102"), nil
		}
	}
	return "", errors.New("the server sent neither Content-Disposition nor Last-Modified, so the release cannot be told; is the base URL a MaxMind download endpoint?")
}

// checksum fetches the SHA-256 of the release's archive.
func (m *maxmind) checksum(ctx context.Context, edition, date string) (string, error) {
	var sum string
	err := m.http.do(ctx, request{
		url:   m.url(edition, url.Values{"date": {date}, "suffix": {"tar.gz.sha256"}}),
		auth:  m.auth,
		label: edition + ".tar.gz.sha256",
	}, func(_ *http.Response, body io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(body, 1024))
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		if len(f) == 0 || len(f) > 2 || len(f[0]) != 64 {
			return fmt.Errorf("the .sha256 file is not \"<sha256>  %s_%s.tar.gz\"", edition, date)
		}
		if _, err := hex.DecodeString(f[0]); err != nil {
			return fmt.Errorf("the .sha256 file holds %q, not a SHA-256", f[0])
		}
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") != edition+"_"+date+".tar.gz" {
			return fmt.Errorf("the .sha256 file is for %q, not %s_%s.tar.gz", f[1], edition, date)
		}
		sum = strings.ToLower(f[0])
		return nil
	})
	return sum, m.explain(edition, err)
}

// download fetches the release's archive, checks it against sum, and
// stages the database inside it beside dest.
func (m *maxmind) download(ctx context.Context, edition, date, sum, dest string, maxArchive, maxDB int64) (*staged, string, error) {
	var st *staged
	err := m.http.do(ctx, request{
		url:   m.url(edition, url.Values{"date": {date}, "suffix": {"tar.gz"}}),
		auth:  m.auth,
		label: edition + "_" + date + ".tar.gz",
	}, func(_ *http.Response, body io.Reader) error {
		st.remove() // a previous attempt's
		st = nil
		h := sha256.New()
		capped := &io.LimitedReader{R: body, N: maxArchive + 1}
		in := io.TeeReader(capped, h)
		out, err := newStaging(dest, maxDB)
		if err != nil {
			return err
		}
		_, xerr := extractMMDB(in, edition, out, maxDB, maxOtherEntries)
		// Hash all of it, whatever extraction thought, so that a
		// corrupt download is called corrupt.
		if _, err := io.Copy(io.Discard, in); err != nil && xerr == nil {
			xerr = err
		}
		got := hex.EncodeToString(h.Sum(nil))
		if capped.N <= 0 || got != sum || xerr != nil {
			out.abort()
		}
		switch {
		case capped.N <= 0:
			return fmt.Errorf("the archive is larger than %d bytes; refusing it", maxArchive)
		case got != sum:
			if xerr != nil {
				return fmt.Errorf("checksum mismatch: the archive's SHA-256 is %s, MaxMind's .sha256 says %s (and: %v); the download is corrupt or truncated", got, sum, xerr)
			}
			return fmt.Errorf("checksum mismatch: the archive's SHA-256 is %s, MaxMind's .sha256 says %s; the download is corrupt", got, sum)
		case xerr != nil:
			return xerr
		}
		st, err = out.finish()
		return err
	})
	if err != nil {
		st.remove()
		return nil, "", m.explain(edition, err)
	}
	return st, sum, nil
}

// explain adds to an HTTP error what it means with MaxMind and what to do.
func (m *maxmind) explain(edition string, err error) error {
	se, ok := errors.AsType[*StatusError](err)
	if !ok {
		if err != nil {
			return fmt.Errorf("%s: %w", edition, err)
		}
		return nil
	}
	switch se.Code {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: %w: %w; check the account ID and license key (maxmind.com, Manage License Keys)", edition, ErrUnauthorized, err)
	case http.StatusForbidden:
		return fmt.Errorf("%s: %w: %w; the account may not have this edition, or the license key may be disabled", edition, ErrUnauthorized, err)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%s: %w: %w; not retried: try again tomorrow, and run the loader less often (a HEAD that finds nothing new costs nothing)", edition, ErrLimit, err)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w; is the edition name right (GeoLite2-ASN, GeoLite2-Country, GeoLite2-City, …)?", edition, err)
	}
	return fmt.Errorf("%s: %w", edition, err)
}

// releaseTime is the release date as a time, zero if unreadable.
func releaseTime(date string) time.Time {
	t, err := time.Parse("20060102", date)
	if err != nil {
		return time.Time{}
	}
	return t
}
