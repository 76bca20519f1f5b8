// Package envoytest checks the Envoy configuration in deploy/envoy without
// an Envoy binary:
//
//   - reghost.lua, the Lua filter, runs under gopher-lua (Lua 5.1) with a
//     Go shim of Envoy's stream handle API whose httpCall makes real HTTP
//     requests to a real reghost started by the test, and under LuaJIT
//     (Envoy's engine; Debian's luajit package) with a Lua shim that
//     replays the exchanges recorded in the first run;
//   - envoy.yaml and envoy-ext-authz.yaml are decoded into Envoy's v3
//     protobuf types and validated with the protoc-gen-validate rules
//     Envoy itself enforces, and their wiring is checked: the Lua file, the
//     clusters, the fallback redirect, the health check and the ports;
//   - the ext_authz check that envoy-ext-authz.yaml describes is replayed
//     against a real reghost, as Envoy's HTTP ext_authz client builds it.
//
// The package has no code of its own; everything is in its _test files.
// The LuaJIT tests need the luajit command: apt-get install -y luajit.
package envoytest
