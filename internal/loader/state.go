package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// StateStore keeps the State between runs. The file implementation keeps
// it in the data directory, so a loader in a fresh container whose data
// directory persists does not fetch again what is installed; a Redis
// store can keep it beside the data sets it publishes.
type StateStore interface {
	Load(ctx context.Context) (State, error)
	Save(ctx context.Context, st State) error
}

// stateVersion is the State layout; a file of another version is read
// as empty (everything is fetched once more) rather than misread.
const stateVersion = 1

// State is what the loader knows of the installed data sets: enough to
// tell that a download would bring nothing new, and the baselines the
// checks compare a new file with.
type State struct {
	Version int `json:"version"`
	// Sets is keyed by Set.String(): "geoip/asn", "cloud/aws", …
	Sets map[string]SetState `json:"sets"`
}

// SetState is one installed data set.
type SetState struct {
	File        string    `json:"file"`
	SHA256      string    `json:"sha256"` // of File's content
	Size        int64     `json:"size"`
	Source      string    `json:"source,omitempty"` // URL (without credentials) or local file
	InstalledAt time.Time `json:"installed_at"`
	// BuildTime is a database's build time, or a provider's publication
	// time when it has one.
	BuildTime time.Time `json:"build_time,omitzero"`

	// GeoIP downloads.
	Edition       string `json:"edition,omitempty"`       // MaxMind edition, or the database type of a local file
	Release       string `json:"release,omitempty"`       // MaxMind's release date, YYYYMMDD
	LastModified  string `json:"last_modified,omitempty"` // of the release, as MaxMind sent it
	ArchiveSHA256 string `json:"archive_sha256,omitempty"`

	// Cloud ranges.
	Stamp    string `json:"stamp,omitempty"`    // the provider's publication stamp (cloud.Stamp.Published)
	ETag     string `json:"etag,omitempty"`     // for a conditional GET next time
	Modified string `json:"modified,omitempty"` // Last-Modified, for a conditional GET next time
	Prefixes int    `json:"prefixes,omitempty"` // the shrink check's baseline
}

// FileState is a StateStore in one JSON file, replaced atomically.
type FileState struct{ Path string }

// Load reads the state. A missing file is an empty state; so is an
// unreadable or foreign one, which is only a cache: everything is then
// fetched once more.
func (f FileState) Load(context.Context) (State, error) {
	empty := State{Version: stateVersion, Sets: map[string]SetState{}}
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading the loader state: %w", err)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil || st.Version != stateVersion {
		return empty, nil
	}
	if st.Sets == nil {
		st.Sets = map[string]SetState{}
	}
	return st, nil
}

// Save writes the state to a temporary file and renames it into place.
func (f FileState) Save(_ context.Context, st State) error {
	st.Version = stateVersion
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(f.Path, append(data, '\n'))
}
