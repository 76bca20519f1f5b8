package cloud

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// Small valid documents, also the fuzz seeds.
const (
	awsDoc = `{"syncToken": "1", "createDate": "2026-01-01-00-00-00",
 "prefixes": [{"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "ap-northeast-2"}],
 "ipv6_prefixes": [{"ipv6_prefix": "2406:daba:f000::/40", "region": "ap-southeast-4", "service": "EC2", "network_border_group": "ap-southeast-4"}]}`
	gcpDoc = `{"syncToken": "1", "creationTime": "2026-01-29T12:12:51.194698",
 "prefixes": [{"ipv4Prefix": "34.35.0.0/16", "service": "Google Cloud", "scope": "africa-south1"},
  {"ipv6Prefix": "2600:1900:8000::/44", "service": "Google Cloud", "scope": "africa-south1"}]}`
	azureDoc = `{"changeNumber": 363, "cloud": "Public", "values": [
 {"name": "AzureCloud", "id": "AzureCloud", "properties": {"changeNumber": 1, "region": "", "addressPrefixes": ["4.175.0.0/16", "9.160.0.0/17"]}},
 {"name": "AzureCloud.westeurope", "id": "AzureCloud.westeurope", "properties": {"region": "westeurope", "addressPrefixes": ["4.175.0.0/16", "2603:1020:200::/46"]}},
 {"name": "Storage", "properties": {"region": "", "addressPrefixes": ["20.0.0.0/8"]}}]}`
	oracleDoc = `{"last_updated_timestamp": "2025-07-21T07:13:25.457838", "regions": [
 {"region": "us-ashburn-1", "cidrs": [{"cidr": "129.80.0.0/16", "tags": ["OCI"]}, {"cidr": "134.70.24.0/21", "tags": ["OSN", "OBJECT_STORAGE"]}]}]}`
	digitalOceanDoc = "# DigitalOcean geofeed\n5.101.96.0/21,NL,NL-NH,Amsterdam,1098 XH\n\n2400:6180:0:d0::/64,SG,SG-05,Singapore,627753\n"
)

func parserFunc(t testing.TB, provider string) func(io.Reader) ([]Range, error) {
	t.Helper()
	p, ok := ParserFor(provider)
	if !ok {
		t.Fatalf("no parser for %q", provider)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, provider string
		input          string
		// file, when set, is a snapshot to feed instead of input,
		// cut to truncate bytes when truncate > 0.
		file     string
		truncate int
		want     string
	}{
		{name: "empty file", provider: "aws", input: "", want: `aws: empty file`},
		{name: "only blanks", provider: "gcp", input: " \n\t", want: `gcp: empty file`},
		{name: "truncated JSON", provider: "aws", input: `{"syncToken": "1", "prefixes": [`,
			want: `aws: byte offset 32: unexpected end of JSON input`},
		{name: "truncated snapshot", provider: "azure", file: "azure", truncate: 4096,
			want: `azure: byte offset 4096: unexpected end of JSON input`},
		{name: "syntax error", provider: "gcp", input: `{"syncToken": "1",, "prefixes": []}`,
			want: `gcp: byte offset 19: invalid character ',' looking for beginning of object key string`},
		{name: "trailing garbage", provider: "oracle", input: `{"regions": []} x`,
			want: `oracle: byte offset 17: invalid character 'x' after top-level value`},
		{name: "top level not an object", provider: "aws", input: `[]`,
			want: `aws: top level: got JSON array, want object`},
		{name: "prefixes not a list", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "prefixes": "3.5.140.0/22", "ipv6_prefixes": []}`,
			want: `aws: prefixes: got JSON string, want array`},
		{name: "prefix not a string", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [],
			"prefixes": [{"ip_prefix": "3.5.140.0/22", "region": "r", "service": "s"}, {"ip_prefix": 3, "region": "r", "service": "s"}]}`,
			want: `aws: prefixes[1].ip_prefix: got JSON number, want string`},
		{name: "syncToken not a string", provider: "gcp", input: `{"syncToken": 1, "creationTime": "x", "prefixes": []}`,
			want: `gcp: syncToken: got JSON number, want string`},
		{name: "changeNumber not a number", provider: "azure", input: `{"changeNumber": {}, "cloud": "Public", "values": []}`,
			want: `azure: changeNumber: got JSON object, want number`},
		{name: "nested wrong type", provider: "azure", input: `{"changeNumber": 1, "cloud": "Public",
			"values": [{"name": "AzureCloud.westeurope", "properties": {"region": "westeurope", "addressPrefixes": "4.175.0.0/16"}}]}`,
			want: `azure: values[0].properties.addressPrefixes: got JSON string, want array`},
		{name: "tags not a list", provider: "oracle", input: `{"last_updated_timestamp": "x", "regions": [{"region": "r", "cidrs": [{"cidr": "129.80.0.0/16", "tags": "OCI"}]}]}`,
			want: `oracle: regions[0].cidrs.tags: got JSON string, want array`},
		{name: "bad IPv4 prefix", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [],
			"prefixes": [{"ip_prefix": "3.5.140.0/22", "region": "r", "service": "s"}, {"ip_prefix": "10.0.0/8", "region": "r", "service": "s"}]}`,
			want: `aws: prefixes[1].ip_prefix: netip.ParsePrefix("10.0.0/8"): ParseAddr("10.0.0"): IPv4 address too short`},
		{name: "IPv6 where IPv4 belongs", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [],
			"prefixes": [{"ip_prefix": "2001:db8::/32", "region": "r", "service": "s"}]}`,
			want: `aws: prefixes[0].ip_prefix: "2001:db8::/32" is not an IPv4 prefix`},
		{name: "IPv4 where IPv6 belongs", provider: "gcp", input: `{"syncToken": "1", "creationTime": "x",
			"prefixes": [{"ipv6Prefix": "34.35.0.0/16", "service": "s", "scope": "r"}]}`,
			want: `gcp: prefixes[0].ipv6Prefix: "34.35.0.0/16" is not an IPv6 prefix`},
		{name: "address without length", provider: "oracle", input: `{"last_updated_timestamp": "x", "regions": [{"region": "r", "cidrs": [{"cidr": "129.80.0.1"}]}]}`,
			want: `oracle: regions[0].cidrs[0].cidr: netip.ParsePrefix("129.80.0.1"): no '/'`},
		{name: "prefix length too long", provider: "azure", input: `{"changeNumber": 1, "cloud": "Public",
			"values": [{"name": "AzureCloud", "properties": {"addressPrefixes": ["4.175.0.0/16", "4.175.0.0/33"]}}]}`,
			want: `azure: values[0].properties.addressPrefixes[1]: netip.ParsePrefix("4.175.0.0/33"): prefix length out of range`},
		{name: "default route", provider: "gcp", input: `{"syncToken": "1", "creationTime": "x",
			"prefixes": [{"ipv4Prefix": "0.0.0.0/0", "service": "s", "scope": "r"}]}`,
			want: `gcp: prefixes[0].ipv4Prefix: "0.0.0.0/0" covers every address`},
		{name: "missing region", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "prefixes": [],
			"ipv6_prefixes": [{"ipv6_prefix": "2406:daba:f000::/40", "service": "EC2"}]}`,
			want: `aws: ipv6_prefixes[0]: missing key "region"`},
		{name: "null prefix", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [],
			"prefixes": [{"ip_prefix": null, "region": "r", "service": "s"}]}`,
			want: `aws: prefixes[0]: missing key "ip_prefix"`},
		{name: "goog.json entry without scope", provider: "gcp", input: `{"syncToken": "1", "creationTime": "x", "prefixes": [{"ipv4Prefix": "8.8.4.0/24"}]}`,
			want: `gcp: prefixes[0]: missing key "scope"`},
		{name: "both families", provider: "gcp", input: `{"syncToken": "1", "creationTime": "x",
			"prefixes": [{"ipv4Prefix": "34.35.0.0/16", "ipv6Prefix": "2600:1900:8000::/44", "service": "s", "scope": "r"}]}`,
			want: `gcp: prefixes[0]: has both ipv4Prefix and ipv6Prefix`},
		{name: "neither family", provider: "gcp", input: `{"syncToken": "1", "creationTime": "x", "prefixes": [{"service": "s", "scope": "r"}]}`,
			want: `gcp: prefixes[0]: missing key "ipv4Prefix or ipv6Prefix"`},
		{name: "value without name", provider: "azure", input: `{"changeNumber": 1, "cloud": "Public", "values": [{"properties": {}}]}`,
			want: `azure: values[0]: missing key "name"`},
		{name: "AzureCloud without prefixes", provider: "azure", input: `{"changeNumber": 1, "cloud": "Public", "values": [{"name": "AzureCloud.westeurope", "properties": {"region": "westeurope"}}]}`,
			want: `azure: values[0].properties: missing key "addressPrefixes"`},
		{name: "region without cidrs", provider: "oracle", input: `{"last_updated_timestamp": "x", "regions": [{"region": "r"}]}`,
			want: `oracle: regions[0]: missing key "cidrs"`},
		{name: "no prefixes", provider: "aws", input: `{"syncToken": "1", "createDate": "x", "prefixes": [], "ipv6_prefixes": []}`,
			want: `aws: no prefixes found; is this an AWS ip-ranges.json file?`},
		{name: "no AzureCloud tags", provider: "azure", input: `{"changeNumber": 1, "cloud": "Public", "values": [{"name": "Storage", "properties": {"addressPrefixes": ["20.0.0.0/8"]}}]}`,
			want: `azure: no prefixes found; is this an Azure Service Tags file (ServiceTags_Public_*.json)?`},
		{name: "comments only", provider: "digitalocean", input: "# nothing here\n\n",
			want: `digitalocean: no prefixes found; is this an RFC 8805 geofeed CSV file (https://digitalocean.com/geo/google.csv)?`},

		// Another provider's file: told apart by the top-level keys.
		{name: "GCP file to AWS", provider: "aws", file: "gcp",
			want: `aws: missing top-level key "createDate"; is this an AWS ip-ranges.json file?`},
		{name: "AWS file to GCP", provider: "gcp", file: "aws",
			want: `gcp: missing top-level key "creationTime"; is this a Google Cloud cloud.json file?`},
		{name: "Oracle file to AWS", provider: "aws", file: "oracle",
			want: `aws: missing top-level key "syncToken"; is this an AWS ip-ranges.json file?`},
		{name: "AWS file to Azure", provider: "azure", file: "aws",
			want: `azure: missing top-level key "changeNumber"; is this an Azure Service Tags file (ServiceTags_Public_*.json)?`},
		{name: "Azure file to Oracle", provider: "oracle", file: "azure",
			want: `oracle: missing top-level key "last_updated_timestamp"; is this an Oracle Cloud public_ip_ranges.json file?`},
		{name: "geofeed to AWS", provider: "aws", file: "digitalocean",
			want: `aws: byte offset 6: invalid character '.' after top-level value`},
		{name: "JSON to geofeed", provider: "digitalocean", file: "gcp",
			want: `digitalocean: line 1: netip.ParsePrefix("{"): no '/'`},

		{name: "geofeed bad prefix", provider: "digitalocean", input: "# feed\n5.101.96.0/21,NL,NL-NH,Amsterdam,\n\n5.101.300.0/22,NL,NL-NH,Amsterdam,\n",
			want: `digitalocean: line 4: netip.ParsePrefix("5.101.300.0/22"): ParseAddr("5.101.300.0"): IPv4 field has value >255`},
		{name: "geofeed bare quote", provider: "digitalocean", input: "5.101.96.0/21,NL,NL-NH,Amster\"dam,\n",
			want: `digitalocean: line 1, column 30: bare " in non-quoted-field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			input := tc.input
			if tc.file != "" {
				input = string(readSnapshot(t, tc.file))
				if tc.truncate > 0 {
					input = input[:tc.truncate]
				}
			}
			ranges, err := parserFunc(t, tc.provider)(strings.NewReader(input))
			if err == nil {
				t.Fatalf("no error; got %d ranges", len(ranges))
			}
			if ranges != nil {
				t.Errorf("got %d ranges with the error", len(ranges))
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestParseNoPrefixesIsSentinel(t *testing.T) {
	t.Parallel()
	_, err := ParseOracle(strings.NewReader(`{"last_updated_timestamp": "x", "regions": []}`))
	if !errors.Is(err, ErrNoPrefixes) {
		t.Errorf("got %v, want ErrNoPrefixes", err)
	}
}

// TestParseTolerates covers input that is odd but valid, and must load.
func TestParseTolerates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, provider, input string
		want                  []Range
	}{
		{name: "host bits masked", provider: "oracle",
			input: `{"last_updated_timestamp": "x", "regions": [{"region": "r", "cidrs": [{"cidr": "129.80.1.2/16"}]}]}`,
			want:  []Range{{"oracle", "r", "", mustPrefix("129.80.0.0/16")}}},
		{name: "IPv4-mapped prefix becomes IPv4", provider: "digitalocean",
			input: "::ffff:5.101.96.0/117,NL,NL-NH\n",
			want:  []Range{{"digitalocean", "NL-NH", "", mustPrefix("5.101.96.0/21")}}},
		{name: "byte order mark", provider: "oracle",
			input: "\xef\xbb\xbf" + `{"last_updated_timestamp": "x", "regions": [{"region": "r", "cidrs": [{"cidr": "129.80.0.0/16", "tags": ["OCI"]}]}]}`,
			want:  []Range{{"oracle", "r", "OCI", mustPrefix("129.80.0.0/16")}}},
		{name: "unknown keys ignored", provider: "aws",
			input: `{"syncToken": "1", "createDate": "x", "newKey": {"a": [1]}, "ipv6_prefixes": [],
				"prefixes": [{"ip_prefix": "3.5.140.0/22", "region": "r", "service": "s", "zone": "z"}]}`,
			want: []Range{{"aws", "r", "s", mustPrefix("3.5.140.0/22")}}},
		{name: "geofeed short rows, extra fields, blanks, CRLF", provider: "digitalocean",
			input: "# comment\r\n  # indented comment\r\n5.101.96.0/21\r\n5.101.104.0/22,NL\r\n 24.144.64.0/22 , US , US-NJ , North Bergen , 07047 , extra\r\n\r\n",
			want: []Range{
				{"digitalocean", "", "", mustPrefix("5.101.96.0/21")},
				{"digitalocean", "NL", "", mustPrefix("5.101.104.0/22")},
				{"digitalocean", "US-NJ", "", mustPrefix("24.144.64.0/22")},
			}},
		{name: "geofeed line of blanks", provider: "digitalocean",
			input: "5.101.96.0/21,NL\n   \n\t\n5.101.104.0/22,NL\n",
			want: []Range{
				{"digitalocean", "NL", "", mustPrefix("5.101.96.0/21")},
				{"digitalocean", "NL", "", mustPrefix("5.101.104.0/22")},
			}},
		{name: "geofeed quoted field", provider: "digitalocean",
			input: "5.101.96.0/21,NL,NL-NH,\"Amsterdam, Noord-Holland\",1098 XH\n",
			want:  []Range{{"digitalocean", "NL-NH", "", mustPrefix("5.101.96.0/21")}}},
		{name: "duplicate keeps first", provider: "gcp",
			input: `{"syncToken": "1", "creationTime": "x", "prefixes": [
				{"ipv4Prefix": "34.35.0.0/16", "service": "a", "scope": "r1"}, {"ipv4Prefix": "34.35.0.0/16", "service": "b", "scope": "r2"}]}`,
			want: []Range{{"gcp", "r1", "a", mustPrefix("34.35.0.0/16")}}},
		{name: "azure region from tag name", provider: "azure",
			input: `{"changeNumber": 1, "cloud": "Public", "values": [{"name": "AzureCloud.westeurope", "properties": {"region": "", "addressPrefixes": ["4.175.0.0/16"]}}]}`,
			want:  []Range{{"azure", "westeurope", "AzureCloud", mustPrefix("4.175.0.0/16")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parserFunc(t, tc.provider)(strings.NewReader(tc.input))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestParsePreference covers which entry is kept when a provider lists a
// prefix more than once.
func TestParsePreference(t *testing.T) {
	t.Parallel()
	aws := func(entries string) string {
		return `{"syncToken": "1", "createDate": "x", "ipv6_prefixes": [], "prefixes": [` + entries + `]}`
	}
	e := func(region, service string) string {
		return `{"ip_prefix": "99.77.128.0/18", "region": "` + region + `", "service": "` + service + `"},`
	}
	last := `{"ip_prefix": "3.5.140.0/22", "region": "x", "service": "y"}`
	tests := []struct {
		name, provider, input string
		region, service       string
	}{
		{"AWS region beats GLOBAL", "aws", aws(e("GLOBAL", "EC2") + e("us-east-1", "AMAZON") + last), "us-east-1", "AMAZON"},
		{"AWS GLOBAL never replaces a region", "aws", aws(e("us-east-1", "AMAZON") + e("GLOBAL", "EC2") + last), "us-east-1", "AMAZON"},
		{"AWS service beats AMAZON", "aws", aws(e("us-east-1", "AMAZON") + e("us-east-1", "S3") + e("us-east-1", "EC2") + last), "us-east-1", "S3"},
		{"AWS service beats AMAZON in GLOBAL", "aws", aws(e("GLOBAL", "AMAZON") + e("GLOBAL", "CLOUDFRONT") + last), "GLOBAL", "CLOUDFRONT"},
		{"AWS first region kept", "aws", aws(e("us-east-1", "AMAZON") + e("us-west-2", "EC2") + last), "us-east-1", "AMAZON"},
		{"AWS region then service", "aws", aws(e("GLOBAL", "AMAZON") + e("us-east-1", "AMAZON") + e("us-east-1", "EC2") + last), "us-east-1", "EC2"},
		{"Azure regional after cloud-wide", "azure", `{"changeNumber": 1, "cloud": "Public", "values": [
			{"name": "AzureCloud", "properties": {"addressPrefixes": ["99.77.128.0/18", "3.5.140.0/22"]}},
			{"name": "AzureCloud.westeurope", "properties": {"region": "westeurope", "addressPrefixes": ["99.77.128.0/18"]}}]}`, "westeurope", "AzureCloud"},
		{"Azure regional before cloud-wide", "azure", `{"changeNumber": 1, "cloud": "Public", "values": [
			{"name": "AzureCloud.westeurope", "properties": {"region": "westeurope", "addressPrefixes": ["99.77.128.0/18"]}},
			{"name": "AzureCloud", "properties": {"addressPrefixes": ["99.77.128.0/18", "3.5.140.0/22"]}}]}`, "westeurope", "AzureCloud"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parserFunc(t, tc.provider)(strings.NewReader(tc.input))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("got %d ranges, want 2: %v", len(got), got)
			}
			want := Range{tc.provider, tc.region, tc.service, mustPrefix("99.77.128.0/18")}
			if got[0] != want {
				t.Errorf("got %+v, want %+v", got[0], want)
			}
		})
	}
}
