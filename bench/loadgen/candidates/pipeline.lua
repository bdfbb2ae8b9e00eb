-- wrk: the same POST, N requests written back to back (default 16): HTTP/1.1 pipelining.
-- Usage: wrk -s pipeline.lua URL -- 16
local body = '{"transaction_id":"tx-1","type":"DEPOSIT","account_id":42,"currency":"USDT","amount":"1"}'
init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format("POST", "/v1/transactions", {["Content-Type"] = "application/json"}, body)
  end
  batch = table.concat(requests)
end
request = function()
  return batch
end
