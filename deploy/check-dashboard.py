"""Checks deploy/grafana/authq-dashboard.json: it parses, has what Grafana needs (title, panels,
schemaVersion, each panel's targets[].expr), and every metric an expr names is one the worker
registers (worker/src/metrics/*.rs, with the exposition's suffixes: counters `_total`,
histograms `_bucket`/`_sum`/`_count`, `register_with_unit(.., Unit::Seconds, ..)` adds
`_seconds`). Then writes the exprs as recording rules (Grafana's $__rate_interval as 5m) to
RULES_OUT, for `promtool check rules` to parse the PromQL.
Usage: python check-dashboard.py DASHBOARD.json METRICS_SOURCE_DIR RULES_OUT"""
import json
import pathlib
import re
import sys

import yaml

dash_path, src_dir, rules_out = sys.argv[1:4]
errors = []
dash = json.loads(pathlib.Path(dash_path).read_text())
for key in ("title", "panels", "schemaVersion"):
    if key not in dash:
        errors.append(f"dashboard has no {key}")

# Metric names the worker registers, with their exposed series names.
src = "\n".join(p.read_text() for p in sorted(pathlib.Path(src_dir).glob("*.rs")))
prefix = re.search(r'Registry::with_prefix\("(\w+)"\)', src).group(1)
types = {}  # field name -> type text
# declarations only (`name: Type<..>,`), not initialisers (`name: Family::default(),`)
for m in re.finditer(r"^\s*(?:pub(?:\([a-z]+\))? )?(\w+): ([A-Z]\w*(?:<[^\n]*>)?),?$", src, re.M):
    types.setdefault(m.group(1), m.group(2))
exposed = set()
for m in re.finditer(
    r'register(_with_unit)?\(\s*"(\w+)",\s*"[^"]*",\s*(Unit::Seconds,\s*)?(?:m|self)\.(\w+)\.clone\(\)',
    src,
):
    name = f"{prefix}_{m.group(2)}" + ("_seconds" if m.group(3) else "")
    t = types.get(m.group(4), "")
    if "Histogram" in t:
        exposed |= {name + s for s in ("_bucket", "_sum", "_count")}
    elif re.search(r"\b(Counter|Seconds)\b", t):
        exposed.add(name + "_total")
    elif "Gauge" in t:
        exposed.add(name)
    else:
        errors.append(f"cannot tell the type of {name} (field {m.group(4)}: {t!r})")
if len(exposed) < 20:
    errors.append(f"only {len(exposed)} metric series found in {src_dir}: the regexes need updating")

rules, used = [], set()
for panel in dash.get("panels", []):
    title = panel.get("title") or f"panel {panel.get('id')}"
    targets = panel.get("targets") or []
    if not targets:
        errors.append(f"{title}: no targets")
    for t in targets:
        expr = t.get("expr")
        if not expr:
            errors.append(f"{title}: a target without expr")
            continue
        for name in set(re.findall(rf"\b{prefix}_\w+", expr)):
            used.add(name)
            if name not in exposed:
                errors.append(f"{title}: {name} is not a metric the worker exposes")
        rules.append({"record": f"dashboard:check_{len(rules)}",
                      "expr": expr.replace("$__rate_interval", "5m")})
pathlib.Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
for e in errors:
    print(e)
if "-v" in sys.argv: print(sorted(exposed))
print(f"{len(dash.get('panels', []))} panels, {len(rules)} exprs, {len(used)} metric names "
      f"(of {len(exposed)} exposed series), {len(errors)} errors")
sys.exit(1 if errors else 0)
