-- wrk: one POST with a small JSON body per request (unpipelined).
wrk.method = "POST"
wrk.path = "/v1/transactions"
wrk.body = '{"transaction_id":"tx-1","type":"DEPOSIT","account_id":42,"currency":"USDT","amount":"1"}'
wrk.headers["Content-Type"] = "application/json"
