package envoytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// luaLiteral writes v as a Lua expression. It knows the types the case
// file is built from.
func luaLiteral(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("nil")
	case bool:
		fmt.Fprint(b, v)
	case int64:
		fmt.Fprint(b, v)
	case string:
		b.WriteByte('"')
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	case *string:
		if v == nil {
			b.WriteString("nil")
		} else {
			luaLiteral(b, *v)
		}
	case []any:
		b.WriteString("{")
		for _, e := range v {
			luaLiteral(b, e)
			b.WriteString(", ")
		}
		b.WriteString("}")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{")
		for _, k := range keys {
			b.WriteString("[")
			luaLiteral(b, k)
			b.WriteString("] = ")
			luaLiteral(b, v[k])
			b.WriteString(", ")
		}
		b.WriteString("}")
	default:
		panic(fmt.Sprintf("luaLiteral: %T", v))
	}
}

// caseForLuaJIT is a case with the exchanges the gopher-lua run recorded.
func caseForLuaJIT(run luaRun) map[string]any {
	r := run.c.req
	headers := []any{}
	for _, kv := range r.Headers {
		headers = append(headers, []any{kv[0], kv[1]})
	}
	req := map[string]any{"method": r.Method, "path": r.Path, "direct": r.DirectRemote, "headers": headers}
	if r.Remote != "" {
		req["remote"] = r.Remote
	}
	if r.Metadata != nil {
		req["metadata"] = r.Metadata
	}
	calls := []any{}
	for _, c := range run.res.Calls {
		call := map[string]any{"cluster": c.Cluster, "timeout_ms": c.TimeoutMS, "body": c.Body}
		if c.Raised != "" {
			call["raised"] = c.Raised
		} else {
			hs := map[string]any{}
			for k, vs := range c.Headers {
				l := []any{}
				for _, v := range vs {
					l = append(l, v)
				}
				hs[k] = l
			}
			resp := map[string]any{}
			for k, v := range c.Response {
				resp[k] = v
			}
			call["headers"], call["response"], call["resp_body"] = hs, resp, c.RespBody
		}
		calls = append(calls, call)
	}
	return map[string]any{"name": run.c.name, "req": req, "calls": calls}
}

// luajitResult is one line of shim.lua's output.
type luajitResult struct {
	Name        string            `json:"name"`
	Responded   bool              `json:"responded"`
	Status      string            `json:"status"`
	Headers     map[string]string `json:"headers"`
	Body        *string           `json:"body"`
	ScriptError string            `json:"script_error"`
	Violation   string            `json:"violation"`
	Calls       []struct {
		Cluster   string              `json:"cluster"`
		TimeoutMS int64               `json:"timeout_ms"`
		Body      *string             `json:"body"`
		Headers   map[string][]string `json:"headers"`
		Raised    string              `json:"raised"`
	} `json:"calls"`
	Logs         []logLine `json:"logs"`
	GlobalsAdded []string  `json:"globals_added"`
}

func (r luajitResult) envoyResult() envoyResult {
	res := envoyResult{Responded: r.Responded, Status: r.Status, Headers: r.Headers, Body: r.Body,
		ScriptError: r.ScriptError, Violation: r.Violation, Logs: r.Logs}
	for _, c := range r.Calls {
		res.Calls = append(res.Calls, httpCallRecord{Cluster: c.Cluster, TimeoutMS: c.TimeoutMS, Body: c.Body, Headers: c.Headers, Raised: c.Raised})
	}
	return res
}

// luajit returns the luajit command, or fails the test: the project's
// test script installs it.
func luajit(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("luajit")
	if err != nil {
		t.Fatal("luajit missing: run apt-get install -y luajit")
	}
	return path
}

// TestLuaFilterLuaJIT runs the cases of TestLuaFilterGopherLua again under
// LuaJIT, the engine Envoy embeds, with shim.lua replaying the httpCall
// exchanges recorded under gopher-lua. LuaJIT runs the script as Envoy
// does, as a coroutine that httpCall and respond yield, across the
// script's pcall; the results must meet the same expectations.
func TestLuaFilterLuaJIT(t *testing.T) {
	bin := luajit(t)
	src := scripts(t)
	status := luaConstant(t, src[scriptShipped], redirectStatusRE)
	runs := runLuaCases(t)

	dir := t.TempDir()
	files := map[scriptVariant]string{scriptShipped: filepath.Join(envoyDir(t), "reghost.lua")}
	for v, s := range src {
		if files[v] == "" {
			files[v] = filepath.Join(dir, string(v))
			if err := os.WriteFile(files[v], []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, v := range []scriptVariant{scriptShipped, scriptTrustXFF, scriptOriginal} {
		var cases []any
		var mine []luaRun
		for _, run := range runs {
			if run.c.script == v {
				cases = append(cases, caseForLuaJIT(run))
				mine = append(mine, run)
			}
		}
		if len(mine) == 0 {
			t.Fatalf("no cases for %s", v)
		}
		var b strings.Builder
		b.WriteString("return ")
		luaLiteral(&b, cases)
		b.WriteString("\n")
		casesFile := filepath.Join(dir, string(v)+".cases.lua")
		if err := os.WriteFile(casesFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), bin, filepath.Join("testdata", "shim.lua"), files[v], casesFile)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("luajit %s: %v\n%s", v, err, stderr.String())
		}
		var results []luajitResult
		sc := bufio.NewScanner(&stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r luajitResult
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("luajit %s: output line %q: %v", v, sc.Text(), err)
			}
			results = append(results, r)
		}
		if len(results) != len(mine)+1 {
			t.Fatalf("luajit %s: %d results for %d cases\n%s", v, len(results)-1, len(mine), stdout.String())
		}
		for _, g := range results[len(mine)].GlobalsAdded {
			if g != "envoy_on_request" && g != "envoy_on_response" {
				t.Errorf("%s under LuaJIT defines the global %q", v, g)
			}
		}
		for i, run := range mine {
			r := results[i]
			t.Run(run.c.name, func(t *testing.T) {
				if r.Name != run.c.name {
					t.Fatalf("result for %q, want %q", r.Name, run.c.name)
				}
				got := r.envoyResult()
				checkLuaResult(t, run.c, got, status)
				// Same answer and same logs as under gopher-lua.
				want := run.res
				if got.Status != want.Status || got.Headers["location"] != want.Headers["location"] {
					t.Errorf("LuaJIT answered %s %q, gopher-lua %s %q", got.Status, got.Headers["location"], want.Status, want.Headers["location"])
				}
				if !slices.Equal(got.Logs, want.Logs) {
					t.Errorf("LuaJIT logged %v, gopher-lua %v", got.Logs, want.Logs)
				}
			})
		}
	}
}
