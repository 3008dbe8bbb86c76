-- wrk script: etcd v3 JSON gateway load, POST /v3/kv/put or /v3/kv/range with base64 key and
-- value, cycling over every key (the gateway's request format; see perf-anchors A1).
--
-- Usage: wrk ... -s etcd_kv.lua http://127.0.0.1:2379 -- <put|get> [keys] [value_size] [prefix]
--   put: {"key": b64(<prefix>%08d), "value": b64(value)}; get: {"key": b64(<prefix>%08d)}.
-- Defaults: get, 1000 keys, 256 bytes, prefix "bench/". Requests are built once in init().

local requests = {}
local count = 0
local index = 0

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding (what the gateway's JSON bytes fields carry).
local function b64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = string.byte(data, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local s1 = math.floor(n / 262144) % 64
    local s2 = math.floor(n / 4096) % 64
    local s3 = math.floor(n / 64) % 64
    local s4 = n % 64
    out[#out + 1] = string.sub(ALPHABET, s1 + 1, s1 + 1)
    out[#out + 1] = string.sub(ALPHABET, s2 + 1, s2 + 1)
    out[#out + 1] = b and string.sub(ALPHABET, s3 + 1, s3 + 1) or "="
    out[#out + 1] = c and string.sub(ALPHABET, s4 + 1, s4 + 1) or "="
  end
  return table.concat(out)
end

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
    error("etcd_kv.lua: operation must be put or get, not " .. op)
  end
  local value = b64(make_value(size))
  for k = 0, keys - 1 do
    local key = b64(string.format("%s%08d", prefix, k))
    local path, body
    if op == "put" then
      path = "/v3/kv/put"
      body = '{"key":"' .. key .. '","value":"' .. value .. '"}'
    else
      path = "/v3/kv/range"
      body = '{"key":"' .. key .. '"}'
    end
    requests[k + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
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
