#!/usr/bin/env python3
"""check_deploy.py -- structure of the deploy/ files (no server needed).

- deploy/grafana/balanced-dashboard.json is well-formed JSON and an importable dashboard:
  title, uid, schemaVersion, a Prometheus datasource variable that every panel and query
  uses, unique panel ids, grid positions inside the 24 columns and not overlapping,
  queries with unique refIds, and a panel for every metric family of the node;
- every balanced_* / process_* name in the dashboard, alerts.yml and alerts_test.yml is a
  known family (or a _bucket/_sum/_count series of a known histogram): catches typos that
  the rule unit tests cannot see, since their input series would share the typo;
- every alert in alerts.yml has a severity label, summary, description and runbook_url, and
  is exercised by alerts_test.yml.

    python3 tests/observability/check_deploy.py
"""

import json
import re

import obs_support as obs

KNOWN = dict(obs.EXPORTED_FAMILIES)
KNOWN.update(obs.PLANNED_FAMILIES)
GRAFANA_PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap"}
NAME_RE = re.compile(r"\b((?:balanced|process)_[a-z0-9_]+)\b")


def family_of(name):
    if name in KNOWN:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and KNOWN.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


def load_dashboard():
    with open(obs.DASHBOARD_FILE) as f:
        return json.load(f)


def all_panels(dashboard):
    out = []

    def walk(panels):
        for panel in panels:
            out.append(panel)
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def check_dashboard_structure():
    d = load_dashboard()
    problems = []
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list), ("templating", dict)):
        if not isinstance(d.get(key), kind):
            problems.append("top-level %r missing or not %s" % (key, kind.__name__))
    if problems:
        raise AssertionError("; ".join(problems))
    if d.get("id") is not None:
        problems.append("top-level id must be null for import")
    variables = d["templating"].get("list", [])
    ds_vars = [v["name"] for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if len(ds_vars) != 1:
        raise AssertionError("expected one Prometheus datasource variable, found %s" % ds_vars)
    ds_ref = "${%s}" % ds_vars[0]
    for v in variables:
        if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") != ds_ref:
            problems.append("variable %s does not use %s" % (v.get("name"), ds_ref))
    ids = set()
    cells = {}
    panels = all_panels(d)
    for p in panels:
        title = p.get("title") or "?"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            problems.append("panel %r: missing or duplicate id %r" % (title, p.get("id")))
        ids.add(p.get("id"))
        if p.get("type") not in GRAFANA_PANEL_TYPES:
            problems.append("panel %r: unknown type %r" % (title, p.get("type")))
        if not p.get("title"):
            problems.append("panel id %r has no title" % p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append("panel %r: bad gridPos %r" % (title, g))
            continue
        if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1 or g["y"] < 0:
            problems.append("panel %r: gridPos outside the 24 columns %r" % (title, g))
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append("panel %r overlaps panel %r" % (title, cells[(x, y)]))
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p["type"] == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != ds_ref:
            problems.append("panel %r does not use the datasource variable %s" % (title, ds_ref))
        targets = p.get("targets") or []
        if not targets:
            problems.append("panel %r has no query" % title)
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
            problems.append("panel %r: missing or duplicate refIds %s" % (title, ref_ids))
        for t in targets:
            if not isinstance(t.get("expr"), str) or not t["expr"].strip():
                problems.append("panel %r: a query without expr" % title)
            elif t["expr"].count("(") != t["expr"].count(")") or t["expr"].count("{") != t["expr"].count("}"):
                problems.append("panel %r: unbalanced brackets in %s" % (title, t["expr"]))
            if (t.get("datasource") or {}).get("uid") not in (None, ds_ref):
                problems.append("panel %r: a query with another datasource" % title)
    if problems:
        raise AssertionError("\n  " + "\n  ".join(problems))
    return len(panels)


def dashboard_exprs():
    return [t["expr"] for p in all_panels(load_dashboard()) for t in p.get("targets", []) if t.get("expr")]


def check_dashboard_coverage():
    used = set()
    for expr in dashboard_exprs():
        for name in NAME_RE.findall(expr):
            family = family_of(name)
            if family:
                used.add(family)
    missing = sorted(set(KNOWN) - used)
    if missing:
        raise AssertionError("no dashboard panel shows: %s" % ", ".join(missing))


def check_names(path, text):
    unknown = sorted({name for name in NAME_RE.findall(text) if family_of(name) is None})
    if unknown:
        raise AssertionError("%s names unknown metrics: %s" % (path, ", ".join(unknown)))


def check_all_names():
    check_names(obs.DASHBOARD_FILE, "\n".join(dashboard_exprs()))
    for path in (obs.ALERTS_FILE, obs.ALERTS_TEST_FILE):
        with open(path) as f:
            check_names(path, f.read())


def split_alerts(text):
    """[(name, block text)] of the rules in alerts.yml (the file is kept in this layout)."""
    parts = re.split(r"^\s*- alert:\s*", text, flags=re.MULTILINE)
    out = []
    for part in parts[1:]:
        name = part.split("\n", 1)[0].strip()
        out.append((name, part))
    return out


def check_alert_fields():
    with open(obs.ALERTS_FILE) as f:
        alerts = split_alerts(f.read())
    with open(obs.ALERTS_TEST_FILE) as f:
        tests = f.read()
    if not alerts:
        raise AssertionError("no alert in %s" % obs.ALERTS_FILE)
    problems = []
    names = [name for name, _ in alerts]
    if len(set(names)) != len(names):
        problems.append("duplicate alert names")
    for name, block in alerts:
        if not re.search(r"^\s+severity:\s*(critical|warning|info)\s*$", block, re.MULTILINE):
            problems.append("%s: no severity critical/warning/info" % name)
        for field in ("summary", "description"):
            if not re.search(r"^\s+%s:" % field, block, re.MULTILINE):
                problems.append("%s: no %s annotation" % (name, field))
        if not re.search(r'^\s+runbook_url:\s*"?docs/operations\.md#alerts"?\s*$', block, re.MULTILINE):
            problems.append("%s: no runbook_url to docs/operations.md#alerts" % name)
        test_evals = re.findall(r"^\s+alertname:\s*%s\s*$" % name, tests, re.MULTILINE)
        if len(test_evals) < 2:
            problems.append("%s: fewer than 2 evaluations in %s" % (name, obs.ALERTS_TEST_FILE))
    if problems:
        raise AssertionError("\n  " + "\n  ".join(problems))
    return len(alerts)


def main():
    obs.parse_args(__doc__)
    suite = obs.Suite()
    suite.check("dashboard is well-formed JSON with the expected structure", check_dashboard_structure)
    suite.check("dashboard shows every metric family", check_dashboard_coverage)
    suite.check("dashboard and rules name only known metrics", check_all_names)
    suite.check("every alert has severity, summary, description, runbook_url and tests", check_alert_fields)
    suite.finish()


if __name__ == "__main__":
    main()
