package cloud

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// fuzzParser runs a parser on arbitrary input: it must not panic, and what
// it returns must be either an error and no ranges, or at least one range
// with a valid, masked prefix of the right provider, each prefix once.
func fuzzParser(f *testing.F, provider string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	parse := parserFunc(f, provider)
	f.Fuzz(func(t *testing.T, data []byte) {
		ranges, err := parse(bytes.NewReader(data))
		if err != nil {
			if ranges != nil {
				t.Errorf("error %v with %d ranges", err, len(ranges))
			}
			return
		}
		if len(ranges) == 0 {
			t.Fatal("no error and no ranges")
		}
		seen := make(map[netip.Prefix]bool, len(ranges))
		for _, r := range ranges {
			checkRange(t, provider, r)
			if seen[r.Prefix] {
				t.Errorf("%v listed twice", r.Prefix)
			}
			seen[r.Prefix] = true
		}
		// What parses must also build a table that finds every prefix.
		tab := NewTable(ranges)
		if tab.Len() != len(ranges) {
			t.Errorf("table has %d prefixes, parser gave %d", tab.Len(), len(ranges))
		}
		for _, r := range ranges {
			if got, ok := tab.Lookup(r.Prefix.Addr()); !ok || got.Provider != provider || got.Prefix.Bits() < r.Prefix.Bits() {
				t.Errorf("Lookup(%s) = %+v, %v; want %v or more specific", r.Prefix.Addr(), got, ok, r.Prefix)
			}
		}
	})
}

func FuzzParseAWS(f *testing.F) {
	fuzzParser(f, "aws", awsDoc,
		`{"syncToken": "1", "createDate": "x", "prefixes": [], "ipv6_prefixes": []}`,
		`{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [], "prefixes": [{"ip_prefix": "3.5.140.7/22", "region": "GLOBAL", "service": "AMAZON"}, {"ip_prefix": "3.5.140.0/22", "region": "us-east-1", "service": "EC2"}]}`)
}

func FuzzParseGCP(f *testing.F) {
	fuzzParser(f, "gcp", gcpDoc,
		`{"syncToken": "1", "creationTime": "x", "prefixes": [{"ipv6Prefix": "::ffff:34.35.0.0/112", "service": "s", "scope": "r"}]}`)
}

func FuzzParseAzure(f *testing.F) {
	fuzzParser(f, "azure", azureDoc,
		"\xef\xbb\xbf"+`{"changeNumber": 1, "cloud": "Public", "values": [{"name": "AzureCloud.x", "properties": {"region": "", "addressPrefixes": ["4.175.0.0/16"]}}]}`)
}

func FuzzParseOracle(f *testing.F) {
	fuzzParser(f, "oracle", oracleDoc)
}

func FuzzParseDigitalOcean(f *testing.F) {
	fuzzParser(f, "digitalocean", digitalOceanDoc,
		"5.101.96.0/21\n5.101.96.0/22,NL,,x,y,z,w\n\"2400:6180::/32\",SG\n")
}

// A failing reader is reported as a read error, not as a syntax error in
// the part that was read before it failed.
func TestParseReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := ParseAWS(&failingReader{data: []byte(awsDoc[:20]), err: boom})
	if !errors.Is(err, boom) || err.Error() != "aws: read: boom" {
		t.Errorf("got %v, want aws: read: boom", err)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
