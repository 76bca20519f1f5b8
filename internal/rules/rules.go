// Package rules holds the value types shared by the config file, the
// override store, the admin API and the decision engine: what a rule
// matches, which registries it names, and the checks every one of them
// must pass before it is used.
package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/iso3166"
)

// Kind is the kind of a match, in decision order: a smaller Kind is more
// specific and is tried first.
type Kind uint8

// The match kinds, most specific first (docs/design.md, "What it decides").
const (
	KindNone Kind = iota
	KindCIDR
	KindASN
	KindCloudRegion
	KindCloud
	KindCountry
	KindContinent
)

// Kinds lists the match kinds in decision order.
var Kinds = []Kind{KindCIDR, KindASN, KindCloudRegion, KindCloud, KindCountry, KindContinent}

var kindNames = [...]string{"none", "cidr", "asn", "cloud", "cloud", "country", "continent"}

// String returns the kind's name as it appears in reasons ("cloud" for
// both cloud kinds, as in "cloud:aws/us-east-2" and "cloud:gcp").
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Clouds are the cloud providers whose published ranges reghost reads.
// The names are the keys of the config's cloud_ranges section.
var Clouds = []string{"aws", "gcp", "azure", "oracle", "digitalocean"}

// Continents are the continent codes MaxMind uses.
var Continents = []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"}

// Match selects client addresses. Exactly one kind is set; Region
// narrows Cloud and is never set alone.
type Match struct {
	CIDR      netip.Prefix `json:"cidr,omitzero" yaml:"cidr,omitempty"`
	ASN       uint32       `json:"asn,omitempty" yaml:"asn,omitempty"`
	Cloud     string       `json:"cloud,omitempty" yaml:"cloud,omitempty"`
	Region    string       `json:"region,omitempty" yaml:"region,omitempty"`
	Country   string       `json:"country,omitempty" yaml:"country,omitempty"`
	Continent string       `json:"continent,omitempty" yaml:"continent,omitempty"`
}

// Kind reports which kind of match m is; KindNone if it sets nothing.
// It does not check that only one kind is set: Validate does.
func (m Match) Kind() Kind {
	switch {
	case m.CIDR.IsValid():
		return KindCIDR
	case m.ASN != 0:
		return KindASN
	case m.Cloud != "" && m.Region != "":
		return KindCloudRegion
	case m.Cloud != "":
		return KindCloud
	case m.Country != "":
		return KindCountry
	case m.Continent != "":
		return KindContinent
	}
	return KindNone
}

// String renders m as a decision reason: "cidr:192.168.0.0/24",
// "asn:15169", "cloud:aws/us-east-2", "cloud:gcp", "country:SE",
// "continent:EU".
func (m Match) String() string {
	switch m.Kind() {
	case KindCIDR:
		return "cidr:" + m.CIDR.String()
	case KindASN:
		return "asn:" + strconv.FormatUint(uint64(m.ASN), 10)
	case KindCloudRegion:
		return "cloud:" + m.Cloud + "/" + m.Region
	case KindCloud:
		return "cloud:" + m.Cloud
	case KindCountry:
		return "country:" + m.Country
	case KindContinent:
		return "continent:" + m.Continent
	}
	return "none"
}

var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks that m sets exactly one kind and that its value is
// well formed. Errors name the field, as in "match.country: ...".
func (m Match) Validate() error {
	var set []string
	if m.CIDR.IsValid() {
		set = append(set, "cidr")
	}
	if m.ASN != 0 {
		set = append(set, "asn")
	}
	if m.Cloud != "" {
		set = append(set, "cloud")
	}
	if m.Country != "" {
		set = append(set, "country")
	}
	if m.Continent != "" {
		set = append(set, "continent")
	}
	switch {
	case m.Region != "" && m.Cloud == "":
		return errors.New("match.region: needs match.cloud")
	case len(set) == 0:
		return errors.New("match: empty; set one of cidr, asn, cloud (with optional region), country, continent")
	case len(set) > 1:
		return fmt.Errorf("match: sets %s; a match sets exactly one kind", strings.Join(set, " and "))
	}
	switch m.Kind() {
	case KindCIDR:
		if m.CIDR != m.CIDR.Masked() {
			return fmt.Errorf("match.cidr: %s has host bits set; did you mean %s?", m.CIDR, m.CIDR.Masked())
		}
		if m.CIDR.Addr().Is4In6() {
			return fmt.Errorf("match.cidr: %s is IPv4-mapped IPv6; write the IPv4 prefix", m.CIDR)
		}
		if m.CIDR.Addr().Zone() != "" {
			return fmt.Errorf("match.cidr: %s has a zone", m.CIDR)
		}
	case KindCloudRegion, KindCloud:
		if !slices.Contains(Clouds, m.Cloud) {
			return fmt.Errorf("match.cloud: unknown provider %q; known: %s", m.Cloud, strings.Join(Clouds, ", "))
		}
		if m.Region != "" && !regionRE.MatchString(m.Region) {
			return fmt.Errorf("match.region: %q is not a region name", m.Region)
		}
	case KindCountry:
		if !IsCountry(m.Country) {
			return fmt.Errorf("match.country: %q is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)", m.Country)
		}
	case KindContinent:
		if !slices.Contains(Continents, m.Continent) {
			return fmt.Errorf("match.continent: %q is not a continent code; known: %s", m.Continent, strings.Join(Continents, ", "))
		}
	}
	return nil
}

// IsCountry reports whether cc is an ISO 3166-1 alpha-2 country code in
// upper case, as GeoIP databases give them: the assigned codes, and XK
// (Kosovo), which MaxMind uses. Reserved codes such as UK (the databases
// say GB) and deleted ones such as SU are refused: a rule naming one
// would never match.
func IsCountry(cc string) bool { return iso3166.IsCountry(cc) }

// Rule maps a match to registries in order of preference.
type Rule struct {
	Match      Match    `json:"match" yaml:"match"`
	Registries []string `json:"registries" yaml:"registries"`
}

// Validate checks the match and that every registry is one of known.
func (r Rule) Validate(known func(name string) bool) error {
	if err := r.Match.Validate(); err != nil {
		return err
	}
	if len(r.Registries) == 0 {
		return errors.New("registries: empty; list at least one registry")
	}
	for i, name := range r.Registries {
		if !known(name) {
			return fmt.Errorf("registries[%d]: unknown registry %q", i, name)
		}
		if slices.Index(r.Registries, name) != i {
			return fmt.Errorf("registries[%d]: %q listed twice", i, name)
		}
	}
	return nil
}

// Override is a rule edited at run time and kept in the store. Within
// one kind an override beats a static rule; it stops applying at
// ExpiresAt, when that is set.
type Override struct {
	ID         string    `json:"id"`
	Match      Match     `json:"match"`
	Registries []string  `json:"registries"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	Note       string    `json:"note,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
}

// Rule returns the override's match and registries.
func (o Override) Rule() Rule { return Rule{Match: o.Match, Registries: o.Registries} }

// Expired reports whether o has an expiry at or before now.
func (o Override) Expired(now time.Time) bool {
	return !o.ExpiresAt.IsZero() && !now.Before(o.ExpiresAt)
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the override as a rule, and its id.
func (o Override) Validate(known func(name string) bool) error {
	if !idRE.MatchString(o.ID) {
		return fmt.Errorf("id: %q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", o.ID)
	}
	if len(o.Note) > 1024 {
		return errors.New("note: longer than 1024 bytes")
	}
	if len(o.CreatedBy) > 256 {
		return errors.New("created_by: longer than 256 bytes")
	}
	return o.Rule().Validate(known)
}

// Registry is a registry reghost can send clients to.
type Registry struct {
	Name    string `json:"name" yaml:"name"`
	URL     string `json:"url" yaml:"url"`
	Default bool   `json:"default,omitempty" yaml:"default,omitempty"`
	// Health says how its health is checked, over the config's
	// health_defaults.
	Health Probe `json:"health,omitzero" yaml:"health,omitempty"`
}

// Probe says how a registry's health is checked: a registry's health
// block, and the config's health_defaults under it. A field left out
// takes the next layer's value (the registry's, then health_defaults',
// then the built-in defaults).
type Probe struct {
	// Enabled false: never probed, always counted as up.
	Enabled      *bool         `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	Path         string        `json:"path,omitempty" yaml:"path,omitempty"`
	Expect       []int         `json:"expect,omitempty" yaml:"expect,omitempty"`
	Interval     time.Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	FastInterval time.Duration `json:"fast_interval,omitempty" yaml:"fast_interval,omitempty"`
	Timeout      time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	Rise         int           `json:"rise,omitempty" yaml:"rise,omitempty"`
	Fall         int           `json:"fall,omitempty" yaml:"fall,omitempty"`
}
