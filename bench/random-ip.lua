-- wrk script: each request comes "from" a random public IPv4 address, or
-- one in ten from a random IPv6 one, in X-Real-IP, as Envoy would send it.
-- The path is the first argument after --, default a manifest.
local path = "/v2/pause/manifests/3.9"

function init(args)
  if args[1] then path = args[1] end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

local function random_ip()
  if math.random(10) == 1 then
    return string.format("2%03x:%x:%x::%x", math.random(0, 4095), math.random(0, 65535), math.random(0, 65535), math.random(1, 65535))
  end
  return string.format("%d.%d.%d.%d", math.random(1, 222), math.random(0, 255), math.random(0, 255), math.random(1, 254))
end

function request()
  return wrk.format("GET", path, { ["X-Real-IP"] = random_ip() })
end
