#!/usr/bin/env python3
"""test_prometheus.py -- a real Prometheus server scrapes a real balanced node.

Starts build/balanced (or --bin) on 127.0.0.1 with 2 shards, then `prometheus` (the Debian
package) with a generated configuration: the node scraped every second, the alert rules of
deploy/prometheus/alerts.yml, storage in a temporary directory, the web API on a free
127.0.0.1 port. Waits for /-/ready, sends traffic to the node, and checks through the HTTP
API that:
  - the target is up and balanced_results_total reflects the traffic (bounded wait);
  - histograms give quantiles, the per-shard gauges have one series per shard;
  - every alert of alerts.yml is loaded (/api/v1/rules) and evaluates without error;
  - every query of the Grafana dashboard is accepted by Prometheus;
  - stopping the node makes BalancedDown pending or firing (the rules see real data).
Everything started is stopped at the end, also on failure. The last line is
"observability: N passed, M failed".

    python3 tests/observability/test_prometheus.py [--bin build/balanced]
"""

import json
import math
import re
import uuid

import obs_support as obs

TRAFFIC_WAIT_S = 60.0
RULES_WAIT_S = 60.0
ALERT_WAIT_S = 60.0


def alert_names():
    with open(obs.ALERTS_FILE) as f:
        names = re.findall(r"^\s*-\s*alert:\s*(\w+)\s*$", f.read(), re.MULTILINE)
    if not names:
        raise AssertionError("no alert found in %s" % obs.ALERTS_FILE)
    return names


def dashboard_queries():
    with open(obs.DASHBOARD_FILE) as f:
        dashboard = json.load(f)
    exprs = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return exprs


def vector_sum(data, label=None):
    """{label value: sum} (label None: {None: sum}) of an instant-vector query result."""
    if data.get("resultType") != "vector":
        raise AssertionError("expected a vector, got %s" % data.get("resultType"))
    sums = {}
    for item in data["result"]:
        key = item["metric"].get(label) if label else None
        sums[key] = sums.get(key, 0.0) + float(item["value"][1])
    return sums


def main():
    args = obs.parse_args(__doc__)
    suite = obs.Suite()
    state = {}

    def setup():
        prometheus_bin = obs.require_tool("prometheus")
        node = obs.Node(args.bin, shards=2).start()
        node.wait_ready()
        state["node"] = node
        prom = obs.Prometheus(prometheus_bin, node.port, rule_files=[obs.ALERTS_FILE])
        state["prom"] = prom
        prom.start()

    if not suite.check("node and prometheus started, /-/ready", setup):
        suite.finish()
    node, prom = state["node"], state["prom"]

    def target_up():
        def up():
            sums = vector_sum(prom.query('up{job="balanced"}'))
            return sums.get(None) == 1.0
        obs.wait_for("up{job=\"balanced\"} == 1", up, TRAFFIC_WAIT_S)
        # One scrape of the idle node first, so that rates see the traffic as an increase.
        obs.wait_for("balanced_results_total scraped", lambda: prom.query("balanced_results_total")["result"], TRAFFIC_WAIT_S)

    if not suite.check("target scraped and up", target_up):
        suite.finish()

    def traffic():
        state["expected"] = obs.send_traffic(node.port, "obs-" + uuid.uuid4().hex[:8])

    if not suite.check("traffic sent to the node", traffic):
        suite.finish()
    expected = state["expected"]

    def results_reflect_traffic():
        def reached():
            sums = vector_sum(prom.query("balanced_results_total"), "result")
            state["last_results"] = sums
            return all(sums.get(result) == count for result, count in expected.items())
        try:
            obs.wait_for("balanced_results_total == %s" % expected, reached, TRAFFIC_WAIT_S)
        except AssertionError:
            raise AssertionError("balanced_results_total in Prometheus is %s after %.0f s, expected %s"
                                 % (state.get("last_results"), TRAFFIC_WAIT_S, expected))

    suite.check("balanced_results_total in Prometheus reflects the traffic", results_reflect_traffic)

    def requests_by_route():
        sums = vector_sum(prom.query('balanced_requests_total{route="transactions"}'), "status")
        want_2xx = expected["ok"] - 3  # the batch items go through transactions_batch
        if sums.get("2xx") != want_2xx or sums.get("4xx", 0) < expected["insufficient_available"]:
            raise AssertionError("balanced_requests_total{route=\"transactions\"} by status: %s" % sums)

    suite.check("balanced_requests_total by route and status", requests_by_route)

    def histograms_and_gauges():
        def quantile():
            data = prom.query('histogram_quantile(0.99, sum by (le) (rate(balanced_wal_fsync_seconds_bucket[1m])))')
            values = [float(item["value"][1]) for item in data["result"]]
            return values and not math.isnan(values[0]) and values[0] > 0
        obs.wait_for("fsync p99 from the histogram", quantile, TRAFFIC_WAIT_S)
        for family in ("balanced_queue_depth", "balanced_persister_lag_records", "balanced_balances"):
            shards = sorted(item["metric"].get("shard") for item in prom.query(family)["result"])
            if shards != ["0", "1"]:
                raise AssertionError("%s has shards %s, expected ['0', '1']" % (family, shards))
        balances = vector_sum(prom.query("sum(balanced_balances)")).get(None)
        if not balances or balances < 1:
            raise AssertionError("sum(balanced_balances) is %s" % balances)
        ready = vector_sum(prom.query("balanced_ready")).get(None)
        if ready != 1.0:
            raise AssertionError("balanced_ready is %s" % ready)

    suite.check("histogram quantiles and per-shard gauges", histograms_and_gauges)

    def rules_loaded():
        names = alert_names()

        def loaded():
            groups = prom.api("/api/v1/rules", {"type": "alert"})["groups"]
            rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
            state["rules"] = rules
            missing = [name for name in names if name not in rules]
            if missing:
                return False
            return all(rules[name].get("health") == "ok" for name in names)
        try:
            obs.wait_for("all alerts loaded and evaluated", loaded, RULES_WAIT_S)
        except AssertionError:
            rules = state.get("rules", {})
            missing = [name for name in names if name not in rules]
            unhealthy = ["%s: %s %s" % (name, rules[name].get("health"), rules[name].get("lastError", ""))
                         for name in names if name in rules and rules[name].get("health") != "ok"]
            raise AssertionError("missing alerts: %s; not healthy: %s" % (missing, unhealthy))
        firing = [name for name, rule in state["rules"].items() if rule.get("state") == "firing"]
        if firing:
            raise AssertionError("alerts firing on a healthy node: %s" % firing)
        return len(names)

    suite.check("alert rules loaded (/api/v1/rules) and evaluating", rules_loaded)

    def dashboard_queries_valid():
        bad = []
        queries = dashboard_queries()
        if not queries:
            raise AssertionError("no query found in %s" % obs.DASHBOARD_FILE)
        for title, expr in queries:
            concrete = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*"))
            try:
                prom.query(concrete)
            except AssertionError as error:
                bad.append("%s: %s" % (title, error))
        if bad:
            raise AssertionError("dashboard queries refused:\n  " + "\n  ".join(bad))
        # New series need two samples before rate() sees them: a bounded wait.
        obs.wait_for("the throughput panel's query has data",
                     lambda: vector_sum(prom.query('sum(rate(balanced_requests_total{instance=~".*"}[1m]))')).get(None),
                     TRAFFIC_WAIT_S)
        return len(queries)

    suite.check("every dashboard query is accepted by Prometheus", dashboard_queries_valid)

    def node_down_alert():
        node.stop()

        def active():
            alerts = prom.api("/api/v1/alerts")["alerts"]
            return [a for a in alerts if a["labels"].get("alertname") == "BalancedDown"
                    and a.get("state") in ("pending", "firing")]
        found = obs.wait_for("BalancedDown pending or firing", active, ALERT_WAIT_S)
        if found[0]["labels"].get("severity") != "critical":
            raise AssertionError("BalancedDown labels: %s" % found[0]["labels"])

    suite.check("stopping the node makes BalancedDown pending", node_down_alert)

    prom.stop()
    suite.finish()


if __name__ == "__main__":
    main()
