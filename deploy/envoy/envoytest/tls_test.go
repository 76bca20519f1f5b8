package envoytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// Importing tlsv3 registers DownstreamTlsContext and Secret, so that the
// listener's transport_socket and the SDS file's resources decode.

// listenerPort is where the Envoy configs take registry clients, over TLS.
const listenerPort = 8443

// sdsFiles are the SDS resource files in deploy/envoy (not Envoy configs
// themselves): the certificate the configs' listener serves.
var sdsFiles = []string{"sds-tls.yaml"}

// checkTLS returns every way c's client listener falls short of HTTPS with
// a certificate that rotates without a restart, and of the connection
// settings that go with it. readEtc reads a file that c names under
// /etc/envoy/ (rel is relative to it), where deploy/envoy is mounted.
func checkTLS(c *envoyConfig, readEtc func(rel string) (string, error)) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	for _, l := range c.boot.GetStaticResources().GetListeners() {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains, l.GetDefaultFilterChain())
		}
		if len(chains) == 0 {
			bad("listener %s has no filter chains", l.GetName())
		}
		for i, fc := range chains {
			where := fmt.Sprintf("listener %s filter chain %d", l.GetName(), i)
			ts := fc.GetTransportSocket()
			if ts == nil {
				bad("%s has no transport_socket: clients would get plain HTTP, which registry clients refuse", where)
				continue
			}
			var dtc tlsv3.DownstreamTlsContext
			if ts.GetTypedConfig() == nil || ts.GetTypedConfig().UnmarshalTo(&dtc) != nil {
				bad("%s: transport_socket %s is not a DownstreamTlsContext", where, ts.GetTypedConfig().GetTypeUrl())
				continue
			}
			if d := fc.GetTransportSocketConnectTimeout(); d == nil || d.AsDuration() <= 0 || d.AsDuration() > 10*time.Second {
				bad("%s: transport_socket_connect_timeout %v, want at most 10s: a client could hold a connection open by never finishing its handshake", where, d.AsDuration())
			}
			p = append(p, checkDownstreamTLS(where, &dtc, readEtc)...)
		}
	}

	for _, hcm := range typedOf[*hcmv3.HttpConnectionManager](c) {
		if ct := hcm.GetCodecType(); ct != hcmv3.HttpConnectionManager_AUTO {
			bad("codec_type %v, want AUTO: ALPN chooses HTTP/2 or HTTP/1.1 per client", ct)
		}
		// Edge hardening for HTTP/2 ("Configuring Envoy as an edge proxy").
		h2 := hcm.GetHttp2ProtocolOptions()
		if n := h2.GetMaxConcurrentStreams(); n == nil || n.GetValue() == 0 || n.GetValue() > 100 {
			bad("http2_protocol_options.max_concurrent_streams %d, want 1 to 100 (unset is 2^31-1)", n.GetValue())
		}
		if w := h2.GetInitialStreamWindowSize(); w == nil || w.GetValue() > 64<<10 {
			bad("http2_protocol_options.initial_stream_window_size %d, want set and at most 64 KiB (unset is 256 MiB)", w.GetValue())
		}
		if w := h2.GetInitialConnectionWindowSize(); w == nil || w.GetValue() > 1<<20 {
			bad("http2_protocol_options.initial_connection_window_size %d, want set and at most 1 MiB (unset is 256 MiB)", w.GetValue())
		}
		// Graceful ends: Envoy exits at once on SIGTERM, so connections
		// must end on their own before then (deploytest sizes the
		// Kubernetes preStop sleep with these two).
		if d := hcm.GetCommonHttpProtocolOptions().GetMaxConnectionDuration(); d == nil || d.AsDuration() <= 0 {
			bad("common_http_protocol_options.max_connection_duration unset: a client connection lasts until Envoy stops, and is cut then")
		}
		if d := hcm.GetDrainTimeout(); d == nil || d.AsDuration() <= 0 {
			bad("drain_timeout unset: the Kubernetes preStop sleep is sized with it; say it")
		}
	}
	return p
}

// checkDownstreamTLS checks a listener's TLS context, and the SDS file its
// certificate comes from.
func checkDownstreamTLS(where string, dtc *tlsv3.DownstreamTlsContext, readEtc func(string) (string, error)) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, where+": "+fmt.Sprintf(format, args...)) }
	ctc := dtc.GetCommonTlsContext()
	if v := ctc.GetTlsParams().GetTlsMinimumProtocolVersion(); v < tlsv3.TlsParameters_TLSv1_2 {
		bad("minimum TLS version %v, want TLSv1_2 or later, said explicitly", v)
	}
	alpn := ctc.GetAlpnProtocols()
	if h2, h1 := slices.Index(alpn, "h2"), slices.Index(alpn, "http/1.1"); h2 < 0 || h1 < 0 || h2 > h1 {
		bad("alpn_protocols %q, want h2 then http/1.1: Envoy picks the first it shares with the client", alpn)
	}
	if len(ctc.GetTlsCertificates()) > 0 {
		bad("tls_certificates: a certificate there is read once, and a replaced one serves only after a restart; give it through tls_certificate_sds_secret_configs")
	}
	sds := ctc.GetTlsCertificateSdsSecretConfigs()
	if len(sds) != 1 {
		bad("%d tls_certificate_sds_secret_configs, want 1", len(sds))
		return p
	}
	pcs := sds[0].GetSdsConfig().GetPathConfigSource()
	if pcs == nil {
		bad("SDS secret %q does not come from a file (sds_config.path_config_source)", sds[0].GetName())
		return p
	}
	if v := sds[0].GetSdsConfig().GetResourceApiVersion(); v != corev3.ApiVersion_V3 {
		bad("sds_config.resource_api_version %v, want V3", v)
	}
	file := pcs.GetPath()
	rel, ok := strings.CutPrefix(file, "/etc/envoy/")
	if !ok || strings.Contains(rel, "/") {
		bad("SDS file %s is not in /etc/envoy/, where deploy/envoy's files are mounted", file)
		return p
	}
	if !slices.Contains(sdsFiles, rel) {
		bad("SDS file %s is not one of sdsFiles %q, which the tests check", file, sdsFiles)
	}
	if wd := pcs.GetWatchedDirectory().GetPath(); wd != path.Dir(file) {
		bad("path_config_source.watched_directory %q, want %s: a ConfigMap volume updates %s by a symlink swap there, which a watch on the file misses", wd, path.Dir(file), path.Base(file))
	}
	text, err := readEtc(rel)
	if err != nil {
		bad("SDS file %s: %v", file, err)
		return p
	}
	for _, s := range checkSDSFile(text, sds[0].GetName()) {
		bad("SDS file %s: %s", file, s)
	}
	return p
}

// discoveryResponseFields are the fields of
// envoy.service.discovery.v3.DiscoveryResponse, the message an SDS file
// holds. Its Go package also holds the gRPC service, which would bring
// gRPC into the module for this one message; the file's top level is
// checked against these names instead, and each resource decoded as
// Envoy decodes it.
var discoveryResponseFields = []string{"version_info", "resources", "canary", "type_url", "nonce", "control_plane", "resource_errors"}

// decodeSDSFile decodes an SDS file as Envoy's file subscription does (a
// DiscoveryResponse, YAML to JSON to proto3 JSON, unknown fields refused)
// and validates its Secrets with Envoy's rules.
func decodeSDSFile(text string) ([]*tlsv3.Secret, []string) {
	j, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil, []string{"YAML: " + err.Error()}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return nil, []string{"not a DiscoveryResponse: " + err.Error()}
	}
	var p []string
	for k := range top {
		if !slices.Contains(discoveryResponseFields, k) {
			p = append(p, fmt.Sprintf("DiscoveryResponse: unknown field %q", k))
		}
	}
	var resources []json.RawMessage
	if err := json.Unmarshal(top["resources"], &resources); err != nil && top["resources"] != nil {
		p = append(p, "resources: "+err.Error())
	}
	var secrets []*tlsv3.Secret
	for i, raw := range resources {
		var a anypb.Any
		if err := protojson.Unmarshal(raw, &a); err != nil {
			p = append(p, fmt.Sprintf("resources[%d]: %v", i, err))
			continue
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			p = append(p, fmt.Sprintf("resources[%d]: %v", i, err))
			continue
		}
		s, ok := msg.(*tlsv3.Secret)
		if !ok {
			p = append(p, fmt.Sprintf("resources[%d] is a %s, want an envoy.extensions.transport_sockets.tls.v3.Secret", i, a.GetTypeUrl()))
			continue
		}
		if err := s.ValidateAll(); err != nil {
			p = append(p, fmt.Sprintf("resources[%d]: %v", i, err))
		}
		secrets = append(secrets, s)
	}
	return secrets, p
}

// checkSDSFile checks an SDS file that must give the secret name: one
// certificate and key, from files, in a watched directory.
func checkSDSFile(text, name string) []string {
	secrets, p := decodeSDSFile(text)
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if len(secrets) != 1 {
		bad("%d secrets, want 1: Envoy refuses a file with more or fewer", len(secrets))
		return p
	}
	s := secrets[0]
	if s.GetName() != name {
		bad("its secret is named %q; the listener asks for %q, and Envoy refuses any other", s.GetName(), name)
	}
	tc := s.GetTlsCertificate()
	if tc == nil {
		bad("secret %q is not a tls_certificate", s.GetName())
		return p
	}
	cert, key := tc.GetCertificateChain().GetFilename(), tc.GetPrivateKey().GetFilename()
	if cert == "" || key == "" {
		bad("the certificate chain and private key must be files (filename): inline ones would put the key in the repository, and never rotate")
		return p
	}
	dir := path.Dir(cert)
	if path.Dir(key) != dir {
		bad("certificate %s and key %s are in different directories: one Secret volume holds both", cert, key)
	}
	if dir == "/etc/envoy" {
		bad("certificate %s is in /etc/envoy, the config's ConfigMap: a key does not belong in a ConfigMap", cert)
	}
	if wd := tc.GetWatchedDirectory().GetPath(); wd != dir {
		bad("tls_certificate.watched_directory %q, want %s: without it Envoy watches for moves of the files themselves; with it, for any move there, such as the kubelet's \"..data\" swap", wd, dir)
	}
	return p
}

// readEtcDir reads /etc/envoy/<rel> from deploy/envoy.
func readEtcDir(t *testing.T) func(string) (string, error) {
	dir := envoyDir(t)
	return func(rel string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		return string(b), err
	}
}

// TestEnvoyTLS checks both Envoy configs' client listener: TLS, its
// certificate from the SDS file by path, ALPN, and how connections end.
func TestEnvoyTLS(t *testing.T) {
	used := map[string]bool{}
	for _, f := range envoyFiles {
		t.Run(f.file, func(t *testing.T) {
			c, problems := decodeEnvoyConfig(readFile(t, filepath.Join(envoyDir(t), f.file)))
			if c == nil {
				t.Fatal(problems)
			}
			read := readEtcDir(t)
			problems = append(problems, checkTLS(c, func(rel string) (string, error) {
				used[rel] = true
				return read(rel)
			})...)
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
	for _, f := range sdsFiles {
		if !used[f] {
			t.Errorf("SDS file %s is used by no Envoy config", f)
		}
	}
}

// TestEnvoyTLSCheckerFails breaks the TLS settings in ways the checks must
// notice: by editing a file's text (an SDS file's edits apply when
// envoy.yaml reads it), or, to take something out whole, the decoded config.
func TestEnvoyTLSCheckerFails(t *testing.T) {
	for _, tt := range []struct {
		file, old, new string
		mutate         func(*envoyConfig)
		want           string
	}{
		{file: "envoy.yaml", mutate: func(c *envoyConfig) {
			c.boot.GetStaticResources().GetListeners()[0].GetFilterChains()[0].TransportSocket = nil
		}, want: "has no transport_socket"},
		{file: "envoy.yaml", old: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", new: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", want: "is not a DownstreamTlsContext"},
		{file: "envoy.yaml", old: "tls_minimum_protocol_version: TLSv1_2", new: "tls_minimum_protocol_version: TLSv1_1", want: "minimum TLS version TLSv1_1"},
		{file: "envoy-ext-authz.yaml", old: "tls_minimum_protocol_version: TLSv1_2", new: "tls_maximum_protocol_version: TLSv1_3", want: "minimum TLS version TLS_AUTO"},
		{file: "envoy.yaml", old: `alpn_protocols: ["h2", "http/1.1"]`, new: `alpn_protocols: ["http/1.1"]`, want: "alpn_protocols"},
		{file: "envoy-ext-authz.yaml", old: `alpn_protocols: ["h2", "http/1.1"]`, new: `alpn_protocols: ["http/1.1", "h2"]`, want: "alpn_protocols"},
		{file: "envoy-ext-authz.yaml", old: "            alpn_protocols: [\"h2\", \"http/1.1\"]\n", new: "", want: "alpn_protocols []"},
		{file: "envoy.yaml", mutate: func(c *envoyConfig) {
			editTLS(c, func(dtc *tlsv3.DownstreamTlsContext) {
				ctc := dtc.GetCommonTlsContext()
				ctc.TlsCertificates = []*tlsv3.TlsCertificate{{
					CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/envoy-tls/tls.crt"}},
					PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/envoy-tls/tls.key"}},
				}}
				ctc.TlsCertificateSdsSecretConfigs = nil
			})
		}, want: "tls_certificates: a certificate there is read once"},
		{file: "envoy.yaml", mutate: func(c *envoyConfig) {
			editTLS(c, func(dtc *tlsv3.DownstreamTlsContext) {
				dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].SdsConfig = &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				}
			})
		}, want: "does not come from a file"},
		{file: "envoy.yaml", old: "                  watched_directory: {path: /etc/envoy}\n", new: "", want: "path_config_source.watched_directory"},
		{file: "envoy.yaml", old: "path: /etc/envoy/sds-tls.yaml", new: "path: /etc/envoy/sds.yaml", want: "no such file or directory"},
		{file: "envoy.yaml", old: "path: /etc/envoy/sds-tls.yaml", new: "path: /etc/envoy-tls/sds-tls.yaml", want: "is not in /etc/envoy/"},
		{file: "envoy.yaml", old: "- name: registry-tls", new: "- name: registry-cert", want: `the listener asks for "registry-cert"`},
		{file: "sds-tls.yaml", old: "  name: registry-tls", new: "  name: registry", want: `its secret is named "registry"`},
		{file: "sds-tls.yaml", old: "private_key: {filename: /etc/envoy-tls/tls.key}", new: "private_key: {inline_string: secret}", want: "must be files"},
		{file: "sds-tls.yaml", old: "private_key: {filename: /etc/envoy-tls/tls.key}", new: "private_key: {filename: /etc/envoy-key/tls.key}", want: "are in different directories"},
		{file: "sds-tls.yaml", old: "    watched_directory: {path: /etc/envoy-tls}\n", new: "", want: "tls_certificate.watched_directory"},
		{file: "sds-tls.yaml", old: "certificate_chain: {filename: /etc/envoy-tls/tls.crt}", new: "certificat_chain: {filename: /etc/envoy-tls/tls.crt}", want: "unknown field"},
		{file: "sds-tls.yaml", old: "resources:\n", new: "resource:\n", want: "unknown field"},
		{file: "envoy.yaml", old: "      transport_socket_connect_timeout: 10s\n", new: "", want: "transport_socket_connect_timeout"},
		{file: "envoy.yaml", old: "codec_type: AUTO", new: "codec_type: HTTP1", want: "codec_type HTTP1"},
		{file: "envoy-ext-authz.yaml", old: "            max_concurrent_streams: 100\n", new: "", want: "max_concurrent_streams"},
		{file: "envoy.yaml", old: "initial_stream_window_size: 65536", new: "initial_stream_window_size: 268435456", want: "initial_stream_window_size"},
		{file: "envoy.yaml", old: "            max_connection_duration: 10s\n", new: "", want: "max_connection_duration unset"},
		{file: "envoy-ext-authz.yaml", old: "            max_connection_duration: 10s\n", new: "", want: "max_connection_duration unset"},
		{file: "envoy-ext-authz.yaml", old: "          drain_timeout: 5s\n", new: "", want: "drain_timeout unset"},
	} {
		name := tt.file + ": " + tt.new
		if tt.mutate != nil {
			name = tt.file + ": " + tt.want
		}
		t.Run(name, func(t *testing.T) {
			config, sds := tt.file, map[string]string{}
			if slices.Contains(sdsFiles, tt.file) {
				config = "envoy.yaml"
			}
			text := readFile(t, filepath.Join(envoyDir(t), config))
			edit := func(s string) string {
				if strings.Count(s, tt.old) != 1 {
					t.Fatalf("%q occurs %d times in %s, want once", tt.old, strings.Count(s, tt.old), tt.file)
				}
				return strings.Replace(s, tt.old, tt.new, 1)
			}
			switch {
			case tt.mutate != nil:
			case config == tt.file:
				text = edit(text)
			default:
				sds[tt.file] = edit(readFile(t, filepath.Join(envoyDir(t), tt.file)))
			}
			read := readEtcDir(t)
			c, problems := decodeEnvoyConfig(text)
			if c != nil {
				if tt.mutate != nil {
					tt.mutate(c)
				}
				problems = append(problems, checkTLS(c, func(rel string) (string, error) {
					if s, ok := sds[rel]; ok {
						return s, nil
					}
					return read(rel)
				})...)
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem mentions %q; got %q", tt.want, problems)
			}
		})
	}
}

// editTLS changes the first listener's TLS context: decoded, changed by
// edit, and encoded back into the listener's transport_socket.
func editTLS(c *envoyConfig, edit func(*tlsv3.DownstreamTlsContext)) {
	ts := c.boot.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket()
	dtc := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(dtc); err != nil {
		panic(err)
	}
	edit(dtc)
	if err := ts.GetTypedConfig().MarshalFrom(dtc); err != nil {
		panic(err)
	}
}
