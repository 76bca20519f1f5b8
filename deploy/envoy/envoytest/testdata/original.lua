-- The original Envoy Lua filter that reghost began as the backend of,
-- kept to show that reghost's "GET /" still serves it unchanged. The
-- httpCall line is the original's; how it found remoteAddr is not
-- recorded, so this reconstruction takes the connection's address
-- without its port.
function envoy_on_request(request_handle)
  local remoteAddr = request_handle:streamInfo():downstreamDirectRemoteAddress():match("^%[?([^%]]*)%]?:%d+$")
  local path = request_handle:headers():get(":path")
  local headers, body = request_handle:httpCall("reg-host-authority", {[":method"]="GET", [":path"]="/", [":authority"]="reg-host-authority", ["X-Real-Ip"]=remoteAddr}, remoteAddr, 5000)
  request_handle:respond({[":status"]="302", ["location"]="https://"..body..path}, "")
end
