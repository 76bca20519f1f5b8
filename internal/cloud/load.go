package cloud

import (
	"fmt"
	"os"
	"time"
)

// DataSet describes one loaded file, for the admin API's data set list
// (/api/v1/datasets) and for the loader's shrink check.
type DataSet struct {
	Provider string `json:"provider"`
	File     string `json:"file"`
	// Records is the number of distinct prefixes in the file; IPv4 and
	// IPv6 split it. It can exceed what the Table holds for the provider
	// when another provider, given precedence, publishes the same prefix.
	Records int `json:"records"`
	IPv4    int `json:"ipv4"`
	IPv6    int `json:"ipv6"`
	// Published is the provider's own version stamp, as key=value pairs
	// named as in the file: "createDate=... syncToken=..." (AWS),
	// "creationTime=... syncToken=..." (GCP), "changeNumber=... cloud=..."
	// (Azure), "last_updated_timestamp=..." (Oracle); "" when the format
	// has none (DigitalOcean's geofeed).
	Published string    `json:"published,omitempty"`
	ModTime   time.Time `json:"mod_time,omitzero"`
	LoadedAt  time.Time `json:"loaded_at,omitzero"`
	// Loaded is set when ranges from the file are serving; Err is the
	// last load error, "" once a load succeeds or the file is back as it
	// was loaded.
	Loaded bool   `json:"loaded"`
	Err    string `json:"error,omitempty"`
}

// Load parses the files of the config's cloud_ranges section, provider name
// to path, into one Table. Providers are read in the order of Providers,
// which is also their precedence when two publish the same prefix.
//
// Either everything loads or nothing does: an unknown provider name (checked
// before any file is opened) or any bad file is an error, and no Table is
// returned, so a caller keeps the Table it has. An empty map gives an empty
// Table.
func Load(files map[string]string) (*Table, []DataSet, error) {
	for name := range files {
		if parserOf(name) == nil {
			return nil, nil, unknownProvider(name)
		}
	}
	var (
		sets     [][]Range
		datasets []DataSet
	)
	for _, provider := range Providers() {
		file, ok := files[provider]
		if !ok {
			continue
		}
		ranges, ds, err := loadFile(provider, file)
		if err != nil {
			return nil, nil, err
		}
		sets = append(sets, ranges)
		datasets = append(datasets, ds)
	}
	t := NewTable(sets...)
	now := time.Now()
	for i := range datasets {
		datasets[i].LoadedAt = now
	}
	return t, datasets, nil
}

func loadFile(provider, file string) ([]Range, DataSet, error) {
	if file == "" {
		return nil, DataSet{}, fmt.Errorf("%s: no file given", provider)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, DataSet{}, fmt.Errorf("%s: %w", provider, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, DataSet{}, fmt.Errorf("%s: %w", provider, err)
	}
	ranges, published, err := parseReader(provider, parserOf(provider), f)
	if err != nil {
		return nil, DataSet{}, fmt.Errorf("%s: %w", file, err)
	}
	ds := DataSet{
		Provider:  provider,
		File:      file,
		Records:   len(ranges),
		Published: published,
		ModTime:   info.ModTime(),
	}
	for _, r := range ranges {
		if r.Prefix.Addr().Is4() {
			ds.IPv4++
		} else {
			ds.IPv6++
		}
	}
	return ranges, ds, nil
}
