-- reghost.lua: Envoy HTTP Lua filter that redirects container-registry
-- clients to the registry reghost chooses for their address.
--
-- For every GET or HEAD it asks reghost's GET /decide (cluster "reghost")
-- and answers the client with a redirect to the location reghost gives.
-- When reghost cannot answer (down, slow, an error, an unusable answer, or
-- a mistake in this script), the client is redirected to the default
-- registry instead: a pull never fails because reghost is down.
-- Other methods get 405. See README.md beside this file.
--
-- Loaded by envoy.yaml with default_source_code: {filename: /etc/envoy/reghost.lua}.
-- Envoy runs the script with LuaJIT; everything is local except the
-- envoy_on_request entry point Envoy looks for.

-- Settings -----------------------------------------------------------------

-- The host (host or host:port, no scheme or path) of the registry clients
-- are sent to when reghost cannot decide. A route can override it with
-- metadata: filter_metadata: {envoy.filters.http.lua: {default_registry: HOST}}.
-- Keep it equal to host_redirect of the fallback route in envoy.yaml.
local DEFAULT_REGISTRY = "registry.k8s.io"

-- The redirect status sent to clients. 302 is what the original setup
-- used; "307" also works with every registry client.
local REDIRECT_STATUS = "302"

-- The cluster in envoy.yaml that reaches reghost, and how long to wait
-- for its answer before falling back, in milliseconds.
local REGHOST_CLUSTER = "reghost"
local DECIDE_TIMEOUT_MS = 250

-- false: the client is the address of the TCP connection to Envoy.
-- true: the client is the address Envoy derives from X-Forwarded-For,
-- trusting as many hops as the HTTP connection manager's
-- xff_num_trusted_hops says. Set it only when a proxy or load balancer that
-- sets X-Forwarded-For is in front of Envoy, and set xff_num_trusted_hops
-- to match; otherwise any client could choose its registry.
local TRUST_XFF = false

-- Helpers ------------------------------------------------------------------

-- host_of returns the IP address in an Envoy address string, without the
-- port: "192.0.2.1:5555" -> "192.0.2.1", "[2001:db8::1]:5555" ->
-- "2001:db8::1". Anything else (a Unix socket path) gives nil.
local function host_of(address)
  if type(address) ~= "string" then
    return nil
  end
  local v6 = address:match("^%[([%x:%.]+)%]:%d+$")
  if v6 then
    return v6
  end
  local v4 = address:match("^(%d+%.%d+%.%d+%.%d+):%d+$")
  if v4 then
    return v4
  end
  if address:match("^%d+%.%d+%.%d+%.%d+$") or address:match("^[%x:]*:[%x:%.]*$") then
    return address
  end
  return nil
end

local function client_address(handle)
  local info = handle:streamInfo()
  if TRUST_XFF then
    return host_of(info:downstreamRemoteAddress())
  end
  return host_of(info:downstreamDirectRemoteAddress())
end

-- is_host accepts a host name or IPv4 address, optionally with a port:
-- nothing that could add a path, user info or another scheme to a URL.
local function is_host(s)
  return type(s) == "string" and (s:match("^[%w][%w%.%-]*$") or s:match("^[%w][%w%.%-]*:%d+$")) ~= nil
end

-- default_registry is the route's default_registry metadata when it is a
-- host, else DEFAULT_REGISTRY.
local function default_registry(handle)
  local ok, host = pcall(function()
    return handle:metadata():get("default_registry")
  end)
  if ok and host ~= nil then
    if is_host(host) then
      return host
    end
    handle:logWarn("reghost: ignoring route metadata default_registry: not a host")
  end
  return DEFAULT_REGISTRY
end

-- is_redirect_url accepts only "https://HOST/PATH" with a HOST that is_host
-- accepts. reghost is trusted to choose among registries, so any such host
-- passes; but plain http:// (a downgrade any on-path attacker could
-- rewrite), an empty host and user info ("user@host", which hides the real
-- host from a reader) are refused, and the client goes to the default
-- registry instead, as on every other failure.
local function is_redirect_url(s)
  if type(s) ~= "string" then
    return false
  end
  local host = s:match("^https://([^/]*)/")
  return host ~= nil and is_host(host)
end

-- decide asks reghost where to send the client. It returns the location,
-- or nil and why not.
local function decide(handle, method, path)
  local client = client_address(handle)
  if not client then
    return nil, "no client IP address in the connection"
  end
  local headers, body = handle:httpCall(REGHOST_CLUSTER, {
    [":method"] = "GET",
    [":path"] = "/decide",
    [":authority"] = "reghost",
    ["x-real-ip"] = client,
    ["x-original-path"] = path,
    ["x-original-method"] = method,
  }, nil, DECIDE_TIMEOUT_MS)
  local status = headers[":status"]
  if status ~= "200" then
    -- Envoy answers 503 itself when reghost is unreachable or has no
    -- healthy host, and 504 when it is too slow.
    return nil, "reghost answered " .. tostring(status) .. ": " .. tostring(body):sub(1, 200)
  end
  local location = headers["x-reghost-location"]
  if not is_redirect_url(location) then
    return nil, "reghost answered 200 without a usable x-reghost-location"
  end
  return location
end

-- Entry point --------------------------------------------------------------

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local method = headers:get(":method")
  if method ~= "GET" and method ~= "HEAD" then
    request_handle:respond({ [":status"] = "405", ["allow"] = "GET, HEAD" }, "")
    return
  end
  local path = headers:get(":path")
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    path = "/"
  end

  -- respond() ends the script, so it stays outside pcall: only deciding
  -- is protected, and whatever goes wrong there leads to the fallback.
  local ok, location, why = pcall(decide, request_handle, method, path)
  if not ok then
    why = "script error: " .. tostring(location)
    location = nil
  end
  if not location then
    location = "https://" .. default_registry(request_handle) .. path
    request_handle:logWarn("reghost: " .. why .. "; redirecting to the default registry")
  end
  request_handle:respond({
    [":status"] = REDIRECT_STATUS,
    ["location"] = location,
    ["cache-control"] = "private, no-store",
  }, "")
end
