-- shim.lua: Envoy's HTTP Lua filter stream handle, for LuaJIT, driven by
-- luajit_test.go. Usage: luajit shim.lua SCRIPT CASES
--
-- SCRIPT is loaded into the global environment as Envoy loads it. For
-- every case in CASES (a Lua file returning a list), envoy_on_request runs
-- as a coroutine, as in Envoy: httpCall and respond yield. LuaJIT has no
-- HTTP, so httpCall checks that the request is the one recorded for the
-- case (by the gopher-lua run against a real reghost) and the driver
-- resumes the script with the recorded response; respond yields and the
-- driver never resumes, which is how Envoy ends a script. Each case's
-- result is printed as one line of JSON, then a last line with the globals
-- the script added.

local script_path, cases_path = arg[1], arg[2]

-- JSON ---------------------------------------------------------------------

local array_mt = {}
local function array(t)
  return setmetatable(t or {}, array_mt)
end

local function json(v)
  local kind = type(v)
  if kind == "nil" then
    return "null"
  elseif kind == "boolean" or kind == "number" then
    return tostring(v)
  elseif kind == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif kind == "table" then
    local parts = {}
    if getmetatable(v) == array_mt then
      for i = 1, #v do
        parts[#parts + 1] = json(v[i])
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, e in pairs(v) do
      parts[#parts + 1] = json(tostring(k)) .. ":" .. json(e)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. kind)
end

-- Helpers ------------------------------------------------------------------

-- headers_from_table reads a headers table as Envoy's
-- buildHeadersFromTable does: lower-case names, string (or number) values
-- or tables of them. Values come back as lists.
local function headers_from_table(t)
  local out = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" then
      error("header key: string expected, got " .. type(k))
    end
    local key = k:lower()
    out[key] = out[key] or array()
    local values = type(v) == "table" and v or { v }
    for _, e in ipairs(values) do
      if type(e) ~= "string" and type(e) ~= "number" then
        error("header value: string expected, got " .. type(e))
      end
      table.insert(out[key], tostring(e))
    end
  end
  return out
end

local function same_headers(a, b)
  for k, v in pairs(a) do
    local w = b[k]
    if w == nil or #w ~= #v then
      return false
    end
    table.sort(v)
    table.sort(w)
    for i = 1, #v do
      if v[i] ~= w[i] then
        return false
      end
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

-- object makes a userdata-like object whose methods must be called with ':'.
local function object(name, methods)
  local self = newproxy(true)
  local mt = getmetatable(self)
  mt.__index = function(_, k)
    local f = methods[k]
    if f == nil then
      error(name .. ": no method " .. tostring(k), 2)
    end
    return function(obj, ...)
      if obj ~= self then
        error(name .. ": method " .. k .. " called without ':'", 2)
      end
      return f(...)
    end
  end
  mt.__newindex = function()
    error(name .. ": cannot set fields", 2)
  end
  return self
end

-- The stream handle ----------------------------------------------------------

local function new_handle(case, result)
  local req = case.req
  local request_headers = {
    { ":method", req.method }, { ":path", req.path },
    { ":authority", "registry.example.com" }, { ":scheme", "http" },
  }
  for _, kv in ipairs(req.headers or {}) do
    table.insert(request_headers, { kv[1]:lower(), kv[2] })
  end
  local next_call = 1

  local function check_live()
    if result.responded then
      result.violation = "the stream handle was used after respond()"
      error(result.violation, 3)
    end
  end

  local header_map = object("header map", {
    get = function(key)
      local values = {}
      for _, kv in ipairs(request_headers) do
        if kv[1] == key:lower() then
          table.insert(values, kv[2])
        end
      end
      if #values == 0 then
        return nil
      end
      return table.concat(values, ",")
    end,
    add = function(key, value)
      table.insert(request_headers, { key:lower(), value })
    end,
    replace = function(key, value)
      for i = #request_headers, 1, -1 do
        if request_headers[i][1] == key:lower() then
          table.remove(request_headers, i)
        end
      end
      table.insert(request_headers, { key:lower(), value })
    end,
    remove = function(key)
      for i = #request_headers, 1, -1 do
        if request_headers[i][1] == key:lower() then
          table.remove(request_headers, i)
        end
      end
    end,
  })

  local stream_info = object("stream info", {
    downstreamDirectRemoteAddress = function()
      return req.direct
    end,
    downstreamRemoteAddress = function()
      return req.remote or req.direct
    end,
    protocol = function()
      return "HTTP/1.1"
    end,
  })

  local metadata = object("metadata", {
    get = function(key)
      return (req.metadata or {})[key]
    end,
  })

  local methods = {
    headers = function()
      check_live()
      return header_map
    end,
    streamInfo = function()
      check_live()
      return stream_info
    end,
    metadata = function()
      check_live()
      return metadata
    end,
    httpCall = function(cluster, headers, body, timeout, async)
      check_live()
      if type(cluster) ~= "string" then
        error("bad argument #2 to 'httpCall' (string expected)", 2)
      end
      if type(headers) ~= "table" then
        error("bad argument #3 to 'httpCall' (table expected)", 2)
      end
      if body ~= nil and type(body) ~= "string" then
        error("bad argument #4 to 'httpCall' (string expected)", 2)
      end
      if type(timeout) == "table" then
        timeout = timeout.timeout_ms or 0
      elseif type(timeout) ~= "number" or timeout ~= math.floor(timeout) then
        error("bad argument #5 to 'httpCall' (integer expected)", 2)
      elseif async ~= nil and type(async) ~= "boolean" then
        error("http call asynchronous flag must be 'true', 'false', or empty", 2)
      end
      if timeout < 0 then
        error("http call timeout must be >= 0", 2)
      end
      local rec = case.calls[next_call]
      next_call = next_call + 1
      local got = { cluster = cluster, timeout_ms = timeout, body = body }
      table.insert(result.calls, got)
      if rec == nil then
        result.violation = "httpCall #" .. (next_call - 1) .. " was not made in the recorded run"
        error(result.violation)
      end
      if rec.cluster ~= cluster then
        result.violation = "httpCall to cluster " .. cluster .. ", recorded " .. rec.cluster
        error(result.violation)
      end
      if rec.raised then
        got.raised = rec.raised
        error(rec.raised, 0) -- Envoy's errors from C carry no position
      end
      got.headers = headers_from_table(headers)
      if not same_headers(got.headers, rec.headers) or rec.timeout_ms ~= timeout or rec.body ~= body then
        result.violation = "httpCall differs from the recorded one: " .. json(got)
        error(result.violation)
      end
      if not (got.headers[":path"] and got.headers[":method"] and got.headers[":authority"]) then
        error("http call headers must include ':path', ':method', and ':authority'", 2)
      end
      -- Envoy yields here until the response arrives.
      return coroutine.yield("httpCall", copy(rec.response), rec.resp_body)
    end,
    respond = function(headers, body)
      check_live()
      if type(headers) ~= "table" then
        error("bad argument #2 to 'respond' (table expected)", 2)
      end
      local status = tonumber(headers[":status"])
      if status == nil or status < 200 or status >= 600 then
        error(":status must be between 200-599", 2)
      end
      result.responded = true
      result.status = headers[":status"]
      result.body = body
      for k, v in pairs(headers_from_table(headers)) do
        if k ~= ":status" then
          result.headers[k] = table.concat(v, ",")
        end
      end
      -- Envoy yields here and never resumes the script.
      coroutine.yield("respond")
    end,
  }
  for _, level in ipairs({ "Trace", "Debug", "Info", "Warn", "Err", "Critical" }) do
    methods["log" .. level] = function(message)
      check_live()
      if type(message) ~= "string" then
        error("bad argument #2 to 'log" .. level .. "' (string expected)", 2)
      end
      table.insert(result.logs, { level = level:lower(), message = message })
    end
  end
  return object("stream handle", methods)
end

-- Driver -------------------------------------------------------------------

local function global_names()
  local names = {}
  for k in pairs(_G) do
    names[k] = true
  end
  return names
end

local cases = dofile(cases_path)
local before = global_names()
dofile(script_path)
local after_load = global_names()
local on_request = envoy_on_request
if type(on_request) ~= "function" then
  error("the script defines no envoy_on_request function")
end

-- From here on, reading an undefined global is an error: in Envoy it
-- would be nil, which is never what a script means.
setmetatable(_G, {
  __index = function(_, k)
    error("read of undefined global " .. tostring(k), 2)
  end,
})

for _, case in ipairs(cases) do
  local result = { name = case.name, responded = false, headers = {}, calls = array(), logs = array() }
  local handle = new_handle(case, result)
  local co = coroutine.create(on_request)
  local ok, what, resp_headers, resp_body = coroutine.resume(co, handle)
  while true do
    if not ok then
      result.script_error = tostring(what)
      break
    end
    if coroutine.status(co) == "dead" then
      break -- returned without responding: Envoy continues to the router
    end
    if what == "respond" then
      break
    end
    if what ~= "httpCall" then
      result.violation = "script performed an unexpected yield"
      break
    end
    ok, what, resp_headers, resp_body = coroutine.resume(co, resp_headers, resp_body)
  end
  io.write(json(result), "\n")
end

local added = array()
for _, names in ipairs({ after_load, global_names() }) do
  for k in pairs(names) do
    if not before[k] then
      table.insert(added, k)
    end
  end
end
io.write(json({ globals_added = added }), "\n")
