-- wrk script: Consul KV load on /v1/kv/<prefix><%08d key number>, cycling over every key.
--
-- Usage: wrk ... -s consul_kv.lua http://127.0.0.1:8500 -- <put|get> [keys] [value_size] [prefix]
--   put: PUT with a value_size-byte raw body (the value bench/http_kv.py seeds), Consul's
--        /v1/kv write; get: GET of the same keys (default consistency, JSON answer).
-- Defaults: get, 1000 keys, 256 bytes, prefix "bench/". Requests are built once in init(), so
-- the per-request cost inside wrk is one table lookup.

local requests = {}
local count = 0
local index = 0

-- The value bytes: 'a'..'z' repeated, the same pattern bench/http_kv.py uses.
local function make_value(size)
  local chars = {}
  for k = 0, size - 1 do
    chars[#chars + 1] = string.char(97 + (k % 26))
  end
  return table.concat(chars)
end

function init(args)
  local op = args[1] or "get"
  local keys = tonumber(args[2] or "1000")
  local size = tonumber(args[3] or "256")
  local prefix = args[4] or "bench/"
  if op ~= "put" and op ~= "get" then
    error("consul_kv.lua: operation must be put or get, not " .. op)
  end
  local value = make_value(size)
  for k = 0, keys - 1 do
    local path = string.format("/v1/kv/%s%08d", prefix, k)
    if op == "put" then
      requests[k + 1] = wrk.format("PUT", path, {}, value)
    else
      requests[k + 1] = wrk.format("GET", path, {})
    end
  end
  count = keys
end

function request()
  index = index + 1
  if index > count then
    index = 1
  end
  return requests[index]
end
