package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/loader"
)

const cloudHelp = `Fetches each configured provider's published IP ranges (every provider
under --data-dir) and installs those that are new. Each download is parsed
with the server's own parser and refused, unless --force, when it is empty or
does not parse, is older than the installed file by the provider's own stamp
(AWS syncToken, GCP syncToken, Azure changeNumber, Oracle
last_updated_timestamp), or has more than --max-shrink percent fewer prefixes.
The report lists per provider and region the prefixes added and removed, new
regions, and regions rules name that the file lacks; --dry-run stops there.

Azure's file has a new dated name each week: the loader tries the names of
the last two weeks, newest first, then further back with a warning.
Default URLs:
  aws           https://ip-ranges.amazonaws.com/ip-ranges.json
  gcp           https://www.gstatic.com/ipranges/cloud.json
  azure         https://download.microsoft.com/download/7/1/D/71D86715-5596-4529-9B13-DA13A5DE5B63/ServiceTags_Public_{date}.json
  oracle        https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json
  digitalocean  https://www.digitalocean.com/geo/google.csv
`

type cloudFlags struct {
	commonFlags
	urls      mapFlag
	providers listFlag
	maxShrink float64
}

func (c cli) cloud(args []string) int {
	f := cloudFlags{urls: mapFlag{}}
	fs := flag.NewFlagSet("cloud", flag.ContinueOnError)
	f.register(fs)
	fs.Var(f.urls, "url", "`provider=URL` to fetch a provider's ranges from, repeatable; {date} in it stands for YYYYMMDD, tried back from today")
	fs.Var(&f.providers, "provider", "only this `provider`, repeatable (default: every provider the config has a file for)")
	fs.Float64Var(&f.maxShrink, "max-shrink", 100*loader.DefaultMaxShrink, "refuse a file with more than this `percent` fewer prefixes than the installed one (0 < N <= 100)")
	setUsage(fs, "loader cloud (--config FILE | --data-dir DIR) [flags]", cloudHelp)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if err := f.check(); err != nil {
		return c.usageError(fs, err.Error())
	}
	if f.maxShrink <= 0 || f.maxShrink > 100 {
		return c.usageError(fs, "--max-shrink "+strconv.FormatFloat(f.maxShrink, 'g', -1, 64)+": want a percentage, 0 < N <= 100")
	}
	for name, u := range f.urls {
		if loader.DefaultURL(name) == "" {
			return c.usageError(fs, fmt.Sprintf("--url %s=…: unknown provider; known: %s", name, strings.Join(cloud.Providers(), ", ")))
		}
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return c.usageError(fs, fmt.Sprintf("--url %s=%s: want an http(s) URL", name, u))
		}
	}
	p, err := resolve(f.commonFlags)
	if err != nil {
		fmt.Fprintf(c.stderr, "loader cloud: %v\n", err)
		return exitFail
	}
	var providers []loader.Provider
	for _, name := range cloud.Providers() {
		dest, ok := p.cloud[name]
		if !ok || (f.providers.set && !slices.Contains(f.providers.values, name)) {
			continue
		}
		providers = append(providers, loader.Provider{Name: name, URL: f.urls[name], Dest: dest})
	}
	for _, name := range f.providers.values {
		if _, ok := p.cloud[name]; !ok {
			return c.usageError(fs, fmt.Sprintf("--provider %s: not a provider the config has a file for (cloud_ranges.%s)", name, name))
		}
	}
	for name := range f.urls {
		if !slices.ContainsFunc(providers, func(p loader.Provider) bool { return p.Name == name }) {
			return c.usageError(fs, fmt.Sprintf("--url %s=…: %s is not being fetched", name, name))
		}
	}
	if len(providers) == 0 {
		return c.usageError(fs, "the config names no cloud_ranges file: nothing to fetch")
	}
	log := c.logger(f.commonFlags)
	l, done, err := c.newLoader(f.commonFlags, p, log)
	if err != nil {
		return c.startFailed(fs, err)
	}
	defer done()
	ctx, cancel := c.context(f.commonFlags)
	defer cancel()
	rep, err := l.Cloud(ctx, loader.CloudRequest{
		Providers:   providers,
		RuleRegions: p.ruleRegions,
		MaxShrink:   f.maxShrink / 100,
		Force:       f.force,
		DryRun:      f.dryRun,
	})
	return c.finish(log, f.output, rep, err)
}
