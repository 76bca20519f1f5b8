-- wrk script: an admin changing overrides 100 times a second, each of a
-- thousand in turn, its registry switching between hub and k8s. Run it with
-- -t1 -c1 against the admin listener; the token is the first argument
-- after --.
local token = ""
local n = 0

function init(args)
  token = args[1] or ""
end

function delay()
  return 10
end

function request()
  n = n + 1
  local i = n % 1000
  local registry = (math.floor(n / 1000) % 2 == 0) and "hub" or "k8s"
  return wrk.format("PUT", "/api/v1/overrides/bench-writer-" .. i,
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
    string.format('{"match":{"cidr":"100.64.%d.%d/32"},"registries":["%s"]}', math.floor(i / 256), i % 256, registry))
end
