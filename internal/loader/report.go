package loader

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// listMax is how many prefixes per region and direction the text report
// lists; the JSON report lists all.
const listMax = 20

// WriteText writes the report for people: one block per database.
func (r GeoIPReport) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		name := res.Edition
		if name == "" {
			name = res.Source
		}
		fmt.Fprintf(&b, "geoip/%s  %s  %s -> %s\n", res.Role, res.Action, name, res.File)
		switch {
		case res.Error != "":
			fmt.Fprintf(&b, "  error: %s\n", res.Error)
		case res.Release != "" && res.Previous != "" && res.Previous != res.Release:
			fmt.Fprintf(&b, "  release %s (was %s)\n", res.Release, res.Previous)
		case res.Release != "":
			fmt.Fprintf(&b, "  release %s\n", res.Release)
		}
		if res.DatabaseType != "" {
			fmt.Fprintf(&b, "  %s, built %s, %d networks\n", res.DatabaseType, res.BuildTime.Format(time.RFC3339), res.Networks)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the report for people: per provider what happened,
// the stamps, and per region the prefixes added and removed (at most
// listMax of each; --output json lists all).
func (r CloudReport) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		fmt.Fprintf(&b, "cloud/%s  %s", res.Provider, res.Action)
		if res.URL != "" {
			fmt.Fprintf(&b, "  %s", res.URL)
		}
		fmt.Fprintf(&b, " -> %s\n", res.File)
		if res.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", res.Error)
		}
		if res.Stamp != "" || res.PreviousStamp != "" {
			fmt.Fprintf(&b, "  stamp %s (installed: %s)\n", orNone(res.Stamp), orNone(res.PreviousStamp))
		}
		if res.Action == ActionUnchanged {
			continue
		}
		if res.FirstInstall {
			if res.Prefixes > 0 {
				fmt.Fprintf(&b, "  %d prefixes; nothing installed before to compare with\n", res.Prefixes)
			}
		} else if res.Prefixes > 0 {
			fmt.Fprintf(&b, "  %d prefixes (installed: %d): %d added, %d removed\n", res.Prefixes, res.PreviousPrefixes, res.Added, res.Removed)
		}
		for _, d := range res.Regions {
			fmt.Fprintf(&b, "  %s: +%d -%d", regionName(d.Region), len(d.Added), len(d.Removed))
			var notes []string
			if d.New {
				notes = append(notes, "new region")
				if !d.Ruled {
					notes = append(notes, "no rule names it")
				}
			}
			if d.Gone {
				notes = append(notes, "region gone")
				if d.Ruled {
					notes = append(notes, "a rule names it")
				}
			}
			if len(notes) > 0 {
				fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
			}
			b.WriteString("\n")
			for _, l := range []struct {
				sign  string
				items []string
			}{{"+", prefixStrings(d.Added)}, {"-", prefixStrings(d.Removed)}} {
				for i, p := range l.items {
					if i == listMax {
						fmt.Fprintf(&b, "    %s … and %d more (--output json lists all)\n", l.sign, len(l.items)-listMax)
						break
					}
					fmt.Fprintf(&b, "    %s %s\n", l.sign, p)
				}
			}
		}
		if len(res.RuleRegionsMissing) > 0 {
			fmt.Fprintf(&b, "  rules name regions this file does not have: %s\n", strings.Join(res.RuleRegionsMissing, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func regionName(r string) string {
	if r == "" {
		return "(no region)"
	}
	return r
}
