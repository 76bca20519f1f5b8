package cloud

import (
	"cmp"
	"io"
	"strconv"
	"strings"
	"time"
)

// Stamp is a provider's own version of a published file, read from the
// file itself, so that a tool can tell a newer download from an older
// one (a stale CDN copy, a mirror behind) without trusting HTTP dates.
//
//	aws     syncToken (Unix seconds) and createDate
//	gcp     syncToken (Unix milliseconds) and creationTime
//	azure   changeNumber
//	oracle  last_updated_timestamp
//
// DigitalOcean's geofeed carries none: its Stamp is zero.
type Stamp struct {
	Provider string `json:"provider"`
	// Serial only ever grows between files of one provider: the syncToken
	// of AWS and GCP, Azure's changeNumber; 0 when the format has none.
	Serial uint64 `json:"serial,omitempty"`
	// Time is when the provider says it made the file (UTC); zero when
	// the format has none or it could not be read.
	Time time.Time `json:"time,omitzero"`
	// Published is the stamp as DataSet.Published gives it.
	Published string `json:"published,omitempty"`
}

// IsZero reports whether s says nothing about the file's version.
func (s Stamp) IsZero() bool { return s.Serial == 0 && s.Time.IsZero() }

// Compare orders two stamps of one provider: -1 when s is older than o,
// 0 when they are the same version, +1 when s is newer. ok is false when
// they cannot be ordered: another provider, or a side without a version.
// Serials are compared when both have one, else times.
func (s Stamp) Compare(o Stamp) (c int, ok bool) {
	switch {
	case s.Provider != o.Provider:
		return 0, false
	case s.Serial != 0 && o.Serial != 0:
		return cmp.Compare(s.Serial, o.Serial), true
	case !s.Time.IsZero() && !o.Time.IsZero():
		return s.Time.Compare(o.Time), true
	}
	return 0, false
}

// String is the stamp as the file says it ("createDate=… syncToken=…"),
// or "none".
func (s Stamp) String() string {
	if s.Published == "" {
		return "none"
	}
	return s.Published
}

// ParseFile parses one provider's file exactly as Load does (same parser,
// same size cap and checks) and also returns the file's Stamp. It is for
// tools that vet a download before it replaces the file the server reads.
func ParseFile(provider string, r io.Reader) ([]Range, Stamp, error) {
	p := parserOf(provider)
	if p == nil {
		return nil, Stamp{}, unknownProvider(provider)
	}
	ranges, published, err := parseReader(provider, p, r)
	if err != nil {
		return nil, Stamp{}, err
	}
	return ranges, ParseStamp(provider, published), nil
}

// Layouts of the providers' publication times.
const (
	awsCreateDate = "2006-01-02-15-04-05"        // createDate
	isoNoZone     = "2006-01-02T15:04:05.999999" // GCP creationTime, Oracle last_updated_timestamp (both UTC)
)

// ParseStamp reads a Stamp back from a DataSet.Published string of the
// provider. Fields it cannot read are left zero, so a stamp from an
// unexpected file compares as unknown rather than as very old.
func ParseStamp(provider, published string) Stamp {
	s := Stamp{Provider: provider, Published: published}
	fields := map[string]string{}
	for _, f := range strings.Fields(published) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	serial := func(key string) uint64 {
		n, err := strconv.ParseUint(fields[key], 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	at := func(key, layout string) time.Time {
		t, err := time.ParseInLocation(layout, fields[key], time.UTC)
		if err != nil {
			return time.Time{}
		}
		return t
	}
	switch provider {
	case "aws":
		s.Serial, s.Time = serial("syncToken"), at("createDate", awsCreateDate)
	case "gcp":
		s.Serial, s.Time = serial("syncToken"), at("creationTime", isoNoZone)
	case "azure":
		s.Serial = serial("changeNumber")
	case "oracle":
		s.Time = at("last_updated_timestamp", isoNoZone)
	}
	return s
}
