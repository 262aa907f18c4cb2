"""The checks of deploy/check.sh that no off-the-shelf tool makes.

Run by check.sh with the tools' virtualenv (PyYAML); each subcommand prints
what it checked and exits non-zero on a failure:

  metrics     every metric name in alerts.yml and the dashboard is one that
              src/metrics.rs registers (or one of the few listed in EXTERNAL)
  promql FILE write the dashboard's queries, Grafana variables filled in, as
              recording rules to FILE, for `promtool check rules` to parse
  grafana     dashboard JSON, provisioning and compose mounts agree
  compose     every host path compose.yaml mounts or builds from exists; a
              replica behind haproxy.cfg reads the header HAProxy appends
              the client's address to, and publishes no port of its own; an
              http:// issuer with Redis is allowed explicitly
  k8s         kustomization lists every manifest, the ConfigMap's
              clients.toml is deploy/config/clients.toml, grace periods cover
              shutdown delay plus drain, the image's user matches runAsUser;
              an Ingress routes to a Service and port that exist, on the
              issuer's host, and the pods behind it read the client's address
              from the header the controller sets; NetworkPolicies select the
              pods and open the port they listen on
  clients     deploy/config/clients.toml parses and has the required fields
  dockerfile  rehearse deploy/Dockerfile's build stage up to its first cargo
              build: the context as .dockerignore filters it, each COPY, each
              stub-making RUN, then `cargo fetch --locked`, which fails as
              `cargo build` would on a missing target file or a stale lock
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")

# Metric names used on purpose that src/metrics.rs does not register.
EXTERNAL = {
    # Being added to src/metrics.rs (issue "Operable at scale"); until then the
    # panels and the rule that use them stay empty, and this check says so.
    "token_requests_in_flight": "pending in src/metrics.rs",
    "token_endpoint_signing_key_created_timestamp_seconds": "pending in src/metrics.rs",
    # Prometheus' own, per scrape target.
    "up": "Prometheus",
    # HAProxy's Prometheus exporter (haproxy.cfg, frontend stats); names as
    # HAProxy 2.6's /metrics prints them.
    "haproxy_server_status": "HAProxy exporter",
    "haproxy_backend_active_servers": "HAProxy exporter",
}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring",
    "group_left", "group_right", "offset", "inf", "nan", "atan2",
}

failures = []


def fail(message):
    failures.append(message)
    print(f"  FAILED: {message}")


def ok(message):
    print(f"  ok: {message}")


def finish():
    if failures:
        print(f"  {len(failures)} failure(s)")
        sys.exit(1)


def rel(path):
    return os.path.relpath(path, ROOT)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# --- metric names ------------------------------------------------------------


def registered_metrics():
    """Names src/metrics.rs registers, and which of them are histograms.

    A registration is a name literal followed by its help text, which starts
    with a capitalised word: `Opts::new("name", "Help ...")`,
    `IntCounter::new(...)`, the file's `histogram("name", "Help ...")` helper.
    """
    with open(os.path.join(ROOT, "src", "metrics.rs"), encoding="utf-8") as f:
        source = f.read()
    names = set(re.findall(r'"([a-zA-Z_:][a-zA-Z0-9_:]*)"\s*,\s*"[A-Z][a-z]', source))
    histograms = {
        n for n in names
        if re.search(r'(?:histogram|Histogram\w*(?:::\w+)?)\(\s*"' + re.escape(n) + '"', source)
    }
    if "ProcessCollector" in source:
        names |= {
            "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
            "process_virtual_memory_bytes", "process_resident_memory_bytes",
            "process_start_time_seconds", "process_threads",
        }
    return names, histograms


def known_settings():
    """The TOKEN_ENDPOINT_* names src/config/catalogue.rs documents: the
    service refuses to start with any other (src/config/names.rs)."""
    with open(os.path.join(ROOT, "src", "config", "catalogue.rs"), encoding="utf-8") as f:
        return set(re.findall(r'name:\s*"(TOKEN_ENDPOINT_\w+)"', f.read()))


def metric_names(expr):
    """Metric names in a PromQL expression.

    Strings, label matchers, ranges, grouping clauses and offsets go first;
    what then remains that looks like an identifier and is neither a call
    (followed by "(") nor a keyword is a metric name.
    """
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def grafana_to_promql(expr):
    """A dashboard query as Prometheus would get it from Grafana."""
    e = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
    e = e.replace("$__interval", "1m").replace("$__range", "1h")
    e = re.sub(r"\$\{?instance(?::\w+)?\}?", ".*", e)
    return e


def dashboard_queries():
    path = os.path.join(DEPLOY, "grafana", "dashboards", "token-endpoint.json")
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    queries.append((f'panel "{p.get("title")}" {t.get("refId")}', t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)\s*", q or "")
        if m:
            queries.append((f'variable "{v["name"]}"', m.group(1)))
        elif q:
            queries.append((f'variable "{v["name"]}"', q))
    return queries


def alert_queries():
    rules = load_yaml(os.path.join(DEPLOY, "prometheus", "alerts.yml"))
    out = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f'rule {rule.get("alert") or rule.get("record")}', rule["expr"]))
    return out


def cmd_metrics():
    names, histograms = registered_metrics()
    print(f"  src/metrics.rs registers {len(names)}: {', '.join(sorted(names))}")
    if not names:
        fail("found no metric registrations in src/metrics.rs (has its style changed?)")
    pending = set()
    for where, expr in alert_queries() + [(w, grafana_to_promql(e)) for w, e in dashboard_queries()]:
        for name in sorted(metric_names(expr)):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in names or (name != base and base in histograms):
                continue
            if name in EXTERNAL:
                if EXTERNAL[name].startswith("pending"):
                    pending.add(name)
                continue
            fail(f"{where}: metric {name} is not registered in src/metrics.rs")
    for name in sorted(pending):
        print(f"  note: {name} is used but not registered in src/metrics.rs yet ({EXTERNAL[name]})")
    if not failures:
        ok("every metric name in alerts.yml and the dashboard exists")
    finish()


def cmd_promql(out_path):
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f, sort_keys=False)
    print(f"  {len(rules)} dashboard queries written as recording rules for promtool")


# --- Grafana -------------------------------------------------------------------


def cmd_grafana():
    gdir = os.path.join(DEPLOY, "grafana")
    dash_path = os.path.join(gdir, "dashboards", "token-endpoint.json")
    try:
        with open(dash_path, encoding="utf-8") as f:
            dash = json.load(f)
        ok(f"{rel(dash_path)} is valid JSON")
    except (OSError, ValueError) as e:
        fail(f"{rel(dash_path)}: {e}")
        finish()
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            fail(f"dashboard has no {key}")
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                ds = p.get("datasource", {})
                if ds.get("uid") != "${datasource}":
                    fail(f'panel "{p.get("title")}": datasource is not the ${{datasource}} variable')
                for t in p.get("targets", []):
                    if t.get("datasource", ds).get("uid") != "${datasource}":
                        fail(f'panel "{p.get("title")}" {t.get("refId")}: datasource is not ${{datasource}}')
                if "gridPos" not in p:
                    fail(f'panel "{p.get("title")}" has no gridPos')
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)):
        fail("panel ids are not unique")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    for name in ("datasource", "instance"):
        if name not in variables:
            fail(f"dashboard has no ${name} variable")
    titles = {p.get("title") for p in dash.get("panels", [])}
    wanted = ["Redemptions/s by outcome", "Error ratio", "Request latency p50 / p99",
              "Redis round trip p99", "Signing p99", "Replays/s", "In flight", "Store errors/s"]
    for t in wanted:
        if t not in titles:
            fail(f'dashboard has no panel "{t}"')
    ok(f"dashboard: schemaVersion {dash.get('schemaVersion')}, {len(ids)} panels, "
       f"variables {', '.join(sorted(variables))}, ids unique, every panel on ${{datasource}}")

    ds = load_yaml(os.path.join(gdir, "provisioning", "datasources", "prometheus.yaml"))
    uids = [d.get("uid") for d in ds.get("datasources", [])]
    default = variables.get("datasource", {}).get("current", {}).get("value")
    if default not in uids:
        fail(f"dashboard's default data source {default!r} is not a provisioned uid {uids}")
    prov = load_yaml(os.path.join(gdir, "provisioning", "dashboards", "token-endpoint.yaml"))
    paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    compose = load_yaml(os.path.join(DEPLOY, "compose.yaml"))
    mounts = {}
    for v in compose["services"]["grafana"].get("volumes", []):
        src, dst = v.split(":")[:2]
        mounts[dst] = os.path.normpath(os.path.join(DEPLOY, src))
    for p in paths:
        if mounts.get(p) != os.path.dirname(dash_path):
            fail(f"dashboard provider path {p} is not where compose.yaml mounts grafana/dashboards")
    if mounts.get("/etc/grafana/provisioning") != os.path.join(gdir, "provisioning"):
        fail("compose.yaml does not mount grafana/provisioning at /etc/grafana/provisioning")
    if not failures:
        ok(f"provisioning: data source uid {default!r}, dashboards from {', '.join(paths)}, as compose.yaml mounts them")
    finish()


# --- compose -------------------------------------------------------------------


def cmd_compose():
    compose = load_yaml(os.path.join(DEPLOY, "compose.yaml"))
    checked = 0
    optional = {os.path.join(DEPLOY, "config", "signing-key.pem")}

    def need(path, what):
        nonlocal checked
        full = os.path.normpath(os.path.join(DEPLOY, path))
        checked += 1
        if os.path.exists(full):
            return
        if full in optional:
            print(f"  note: {rel(full)} ({what}) does not exist yet: "
                  "make it with `token-endpoint generate-key > deploy/config/signing-key.pem`")
            return
        fail(f"{what}: {rel(full)} does not exist")

    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            need(build["context"], f"{name} build context")
            need(os.path.join(build["context"], build.get("dockerfile", "Dockerfile")), f"{name} Dockerfile")
        for v in svc.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                need(src, f"{name} volume")
    for kind in ("configs", "secrets"):
        for name, item in compose.get(kind, {}).items():
            need(item["file"], f"{kind[:-1]} {name}")
    if not failures:
        ok(f"compose.yaml: {checked} host paths (build contexts, Dockerfiles, mounts, configs, secrets) exist")
    compose_client_address(compose)
    compose_issuer(compose)
    finish()


def compose_environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: (str(v) if v is not None else None) for k, v in env.items()}


def haproxy_frontend():
    """haproxy.cfg's server hosts, and the header `option forwardfor` appends
    the client's address to (None without the option)."""
    hosts, header = set(), None
    with open(os.path.join(DEPLOY, "haproxy", "haproxy.cfg"), encoding="utf-8") as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "server" and len(w) >= 3:
                hosts.add(w[2].rsplit(":", 1)[0])
            elif w[:2] == ["option", "forwardfor"]:
                header = w[w.index("header") + 1] if "header" in w else "X-Forwarded-For"
            elif w[:3] == ["no", "option", "forwardfor"]:
                header = None
    return hosts, header


def compose_client_address(compose):
    """A replica behind HAProxy sees HAProxy as the TCP peer of every request:
    it must read the client's address from the header HAProxy appends it to,
    and be reachable through HAProxy only (else a client names its own)."""
    services = compose["services"]
    lb = [n for n, svc in services.items()
          if any(isinstance(v, str) and v.split(":")[0].endswith("haproxy/haproxy.cfg")
                 for v in svc.get("volumes", []))]
    hosts, lb_header = haproxy_frontend()
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        m = re.search(r"^ENV\s+TOKEN_ENDPOINT_BIND=(\S+)", f.read(), re.M)
    image_bind = m.group(1) if m else None
    before = len(failures)
    behind = []
    for name, svc in services.items():
        env = compose_environment(svc)
        header = env.get("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER")
        if name not in hosts:
            if header:
                fail(f"compose {name} sets TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER but is not a server of "
                     "haproxy.cfg: its clients would choose their own address")
            continue
        if not lb:
            fail(f"compose {name} is a server of haproxy.cfg, but no service mounts haproxy.cfg")
        builds_image = (svc.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"
        bind = env.get("TOKEN_ENDPOINT_BIND") or (image_bind if builds_image else None) or "127.0.0.1:8080"
        bind_host = bind.rsplit(":", 1)[0].strip("[]")
        if bind_host in ("localhost", "::1") or bind_host.startswith("127."):
            continue  # not reachable from HAProxy's container anyway
        behind.append(name)
        if not lb_header:
            fail(f"compose {name} is behind HAProxy, but haproxy.cfg has no `option forwardfor`: "
                 "the replica cannot learn the client's address")
        elif not header:
            fail(f"compose {name} listens on {bind} behind HAProxy but does not set "
                 f"TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER ({lb_header}, which haproxy.cfg's option "
                 "forwardfor appends to): every request would seem to come from HAProxy, and "
                 "failed client authentications from anyone would lock out everyone")
        elif header.lower() != lb_header.lower():
            fail(f"compose {name}: TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER is {header}, but haproxy.cfg "
                 f"appends the client's address to {lb_header}")
        if header and svc.get("ports"):
            fail(f"compose {name} sets TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER and publishes ports "
                 f"{svc['ports']}: a client reaching it there, not through HAProxy, names its own address")
    if behind and len(failures) == before:
        ok(f"compose {', '.join(behind)}: behind {lb[0]}, read the client's address from {lb_header} "
           "(haproxy.cfg: option forwardfor) and publish no port of their own")


def compose_issuer(compose):
    """The service refuses an http:// issuer with Redis unless
    TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER=allow: the local stack says so."""
    before = len(failures)
    checked = []
    for name, svc in compose["services"].items():
        env = compose_environment(svc)
        issuer = env.get("TOKEN_ENDPOINT_ISSUER")
        if not issuer:
            continue
        checked.append(name)
        if (issuer.startswith("http://") and env.get("TOKEN_ENDPOINT_REDIS_URL")
                and env.get("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER") != "allow"):
            fail(f"compose {name}: TOKEN_ENDPOINT_ISSUER {issuer} is http:// with Redis, without "
                 "TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER: allow, which an http:// issuer with Redis needs")
    if checked and len(failures) == before:
        ok(f"compose {', '.join(checked)}: the issuer's scheme is allowed")


# --- Kubernetes ------------------------------------------------------------------


def k8s_objects():
    kdir = os.path.join(DEPLOY, "k8s")
    objects = {}
    for name in sorted(os.listdir(kdir)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            for doc in load_yaml_all(os.path.join(kdir, name)):
                objects[(doc["kind"], doc["metadata"]["name"])] = (name, doc)
    return objects


def cmd_k8s():
    kdir = os.path.join(DEPLOY, "k8s")
    kust = load_yaml(os.path.join(kdir, "kustomization.yaml"))
    listed = kust.get("resources", [])
    files = sorted(n for n in os.listdir(kdir) if n.endswith(".yaml") and n != "kustomization.yaml")
    for r in listed:
        if not os.path.exists(os.path.join(kdir, r)):
            fail(f"kustomization.yaml lists {r}, which does not exist")
    for f in files:
        if f not in listed and f != "secret.yaml":
            fail(f"k8s/{f} is not listed in kustomization.yaml")
    if "secret.yaml" in listed:
        fail("kustomization.yaml lists secret.yaml: applying it would overwrite the real key")
    ok(f"kustomization.yaml lists {', '.join(listed)} (secret.yaml left out on purpose)")

    objects = k8s_objects()
    dep = objects[("Deployment", "token-endpoint")][1]
    pod = dep["spec"]["template"]["spec"]
    env = objects[("ConfigMap", "token-endpoint-env")][1]["data"]
    clients = objects[("ConfigMap", "token-endpoint-clients")][1]["data"]["clients.toml"]
    with open(os.path.join(DEPLOY, "config", "clients.toml"), encoding="utf-8") as f:
        if clients != f.read():
            fail("k8s/configmap.yaml's clients.toml differs from deploy/config/clients.toml")
        else:
            ok("k8s/configmap.yaml's clients.toml is deploy/config/clients.toml")

    need_s = (int(env.get("TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS", 5000))
              + int(env.get("TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS", 20000))) / 1000
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= need_s:
        fail(f"terminationGracePeriodSeconds {grace} does not exceed shutdown delay + drain = {need_s:g} s")
    else:
        ok(f"terminationGracePeriodSeconds {grace} > shutdown delay + drain = {need_s:g} s")
    compose = load_yaml(os.path.join(DEPLOY, "compose.yaml"))
    for name, svc in compose["services"].items():
        e = svc.get("environment", {})
        if "TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS" in e:
            need_c = (int(e["TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS"]) + int(e["TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS"])) / 1000
            g = svc.get("stop_grace_period", "10s")
            g_s = int(g[:-1]) * (60 if g.endswith("m") else 1)
            if g_s <= need_c:
                fail(f"compose {name}: stop_grace_period {g} does not exceed {need_c:g} s")
    ok("compose stop_grace_period exceeds shutdown delay + drain for every replica")

    # Paths in the environment are where the volumes are mounted.
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files_at = {}
    for vname, path in mounts.items():
        v = volumes[vname]
        if "configMap" in v:
            keys = objects[("ConfigMap", v["configMap"]["name"])][1]["data"].keys()
        elif "secret" in v:
            described = objects.get(("Secret", v["secret"]["secretName"]))
            if described is None:
                fail(f"volume {vname} names a Secret that secret.yaml does not describe")
                continue
            secret = described[1]
            keys = (secret.get("stringData") or secret.get("data")).keys()
        else:
            continue
        for k in keys:
            files_at[f"{path}/{k}"] = vname
    for var in ("TOKEN_ENDPOINT_CLIENTS_FILE", "TOKEN_ENDPOINT_SIGNING_KEYS"):
        for p in env[var].split(","):
            if p not in files_at:
                fail(f"{var}={p} is not a file of any mounted volume ({', '.join(sorted(files_at))})")
    # The file settings configmap.yaml offers commented out (Redis
    # credentials, the listener's certificate) must point into mounted
    # Secrets too, so that uncommenting them is all it takes.
    with open(os.path.join(DEPLOY, "k8s", "configmap.yaml"), encoding="utf-8") as f:
        offered = re.findall(r'^\s*#\s*(TOKEN_ENDPOINT_\w+_FILE):\s*"([^"]+)"', f.read(), re.M)
    if not offered:
        fail("configmap.yaml offers no commented-out file setting (Redis TLS, listener TLS)")
    for var, p in offered:
        if p not in files_at:
            fail(f"configmap.yaml's commented {var}={p} is not a file of any mounted volume")
    ok("the file settings, set and offered, point into the mounted ConfigMap and Secrets: "
       + ", ".join(sorted({var for var, _ in offered} | {"TOKEN_ENDPOINT_CLIENTS_FILE", "TOKEN_ENDPOINT_SIGNING_KEYS"})))

    # A Service named token-endpoint makes Kubernetes inject
    # TOKEN_ENDPOINT_SERVICE_HOST, TOKEN_ENDPOINT_PORT, ... into every pod of
    # the namespace. The service recognises them, but none is wanted.
    if pod.get("enableServiceLinks") is not False:
        fail("the Deployment's pod spec lacks enableServiceLinks: false")
    else:
        ok("enableServiceLinks: false (no TOKEN_ENDPOINT_SERVICE_* variables injected)")
    known = known_settings()
    named = set(container_environment(container, objects)) | set(re.findall(
        r'^\s*#\s*(TOKEN_ENDPOINT_\w+):', open(os.path.join(DEPLOY, "k8s", "configmap.yaml"), encoding="utf-8").read(), re.M))
    for name, svc in compose["services"].items():
        named |= {f"{k}" for k in svc.get("environment", {})}
    unknown = sorted(n for n in named if n.startswith("TOKEN_ENDPOINT_") and n not in known)
    if unknown:
        fail(f"not settings of the service (it would refuse to start): {', '.join(unknown)}")
    else:
        ok(f"every TOKEN_ENDPOINT_* variable in k8s and compose is a setting ({len(known)} known)")

    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        m = re.search(r"^USER\s+(\d+)", f.read(), re.M)
    uid = pod.get("securityContext", {}).get("runAsUser")
    if not m or int(m.group(1)) != uid:
        fail(f"Dockerfile USER {m and m.group(1)} differs from runAsUser {uid}")
    else:
        ok(f"Dockerfile USER and runAsUser are both {uid}")
    selector = dep["spec"]["selector"]["matchLabels"]
    for kind, name in (("Service", "token-endpoint"), ("PodDisruptionBudget", "token-endpoint")):
        spec = objects[(kind, name)][1]["spec"]
        sel = spec["selector"].get("matchLabels", spec["selector"]) if kind != "Service" else spec["selector"]
        if sel != selector:
            fail(f"{kind} selector {sel} differs from the Deployment's {selector}")
    hpa = objects[("HorizontalPodAutoscaler", "token-endpoint")][1]["spec"]["scaleTargetRef"]
    if (hpa["kind"], hpa["name"]) != ("Deployment", "token-endpoint"):
        fail(f"HPA targets {hpa}")
    ok("Service, PodDisruptionBudget and HPA select the Deployment's pods")

    k8s_ingress(objects, dep, container)
    finish()


def container_environment(container, objects):
    """The container's environment as the kubelet builds it: envFrom in
    order (with its prefix), then env over it. Values from the ConfigMaps
    in the manifests are resolved; what comes from elsewhere (a Secret, the
    downward API) is present with the value None."""
    env = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref not in source:
                continue
            name = source[ref]["name"]
            found = objects.get((kind, name))
            if found is None:
                if kind == "ConfigMap" and not source[ref].get("optional"):
                    fail(f"the Deployment's envFrom names ConfigMap {name}, which no manifest defines")
                continue
            doc = found[1]
            data = doc.get("data") or doc.get("stringData") or {}
            for k, v in data.items():
                env[prefix + k] = v if kind == "ConfigMap" else None
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            found = objects.get(("ConfigMap", ref["name"]))
            env[e["name"]] = (found[1].get("data") or {}).get(ref["key"]) if found else None
        else:
            env[e["name"]] = None if "valueFrom" in e else ""
    return env


# Headers each ingress controller (by ingressClassName) sets to the address it
# received the connection from, as the last entry: ingress-nginx sets
# X-Forwarded-For (replacing the client's, or appending to it with
# compute-full-forwarded-for) and X-Real-IP.
CONTROLLER_HEADERS = {"nginx": ("X-Forwarded-For", "X-Real-IP")}


def k8s_ingress(objects, dep, container):
    """An Ingress in front of the token endpoint: its backends exist, its host
    is the issuer's, and the pods take the client's address from the header
    the controller sets, not from the TCP peer (which is the controller's pod
    for every request: one limit on failed authentications for everyone)."""
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    env = container_environment(container, objects)
    header = env.get("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER")
    issuer = env.get("TOKEN_ENDPOINT_ISSUER") or ""
    issuer_url = urllib.parse.urlsplit(issuer)
    services = {name: doc for (kind, name), (_, doc) in objects.items() if kind == "Service"}

    def selects_pods(svc):
        sel = svc["spec"].get("selector") or {}
        return bool(sel) and all(pod_labels.get(k) == v for k, v in sel.items())

    fronted = []  # (file, ingress name, class) routing to the token endpoint
    for (kind, name), (fname, ing) in sorted(objects.items()):
        if kind != "Ingress":
            continue
        spec = ing.get("spec", {})
        backends = []
        if spec.get("defaultBackend"):
            backends.append(("defaultBackend", None, False, spec["defaultBackend"]))
        for rule in spec.get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                where = f"{rule.get('host', '*')}{path.get('path', '')}"
                backends.append((where, rule.get("host"), True, path["backend"]))
        tls_hosts = {h for t in spec.get("tls", []) for h in t.get("hosts", [])}
        routes_here = False
        for where, host, has_host, backend in backends:
            ref = backend.get("service")
            if not ref:
                continue
            svc = services.get(ref["name"])
            if svc is None:
                fail(f"k8s/{fname}: {where} routes to Service {ref['name']}, which no manifest defines")
                continue
            port = ref.get("port", {})
            ports = svc["spec"].get("ports", [])
            if "name" in port:
                known = any(p.get("name") == port["name"] for p in ports)
            else:
                known = any(p.get("port") == port.get("number") for p in ports)
            if not known:
                fail(f"k8s/{fname}: {where} routes to port {port.get('name', port.get('number'))} of "
                     f"Service {ref['name']}, which has ports "
                     f"{', '.join(str(p.get('name') or p.get('port')) for p in ports)}")
            if not selects_pods(svc):
                continue
            routes_here = True
            if has_host and host != issuer_url.hostname:
                fail(f"k8s/{fname}: {where} serves host {host or '(any)'}, but TOKEN_ENDPOINT_ISSUER "
                     f"is {issuer!r}: tokens would name an issuer clients do not reach")
            if has_host and issuer_url.scheme == "https" and host not in tls_hosts:
                fail(f"k8s/{fname}: host {host} has no TLS entry, but the issuer is https")
        if routes_here:
            fronted.append((fname, name, spec.get("ingressClassName")))

    for fname, name, cls in fronted:
        if not header:
            fail(f"k8s/{fname}: Ingress {name} routes to the token endpoint, but the Deployment's "
                 "environment (its envFrom ConfigMaps, its env) does not set "
                 "TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER: every request would seem to come from the "
                 "ingress controller's pod, and failed client authentications from anyone would "
                 "lock out everyone")
        elif cls in CONTROLLER_HEADERS and header.lower() not in map(str.lower, CONTROLLER_HEADERS[cls]):
            fail(f"k8s/{fname}: TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER is {header}, which the "
                 f"{cls} ingress controller does not set (it sets "
                 f"{' and '.join(CONTROLLER_HEADERS[cls])})")
        else:
            ok(f"k8s/{fname}: Ingress {name} ({cls}) routes to the token endpoint on the issuer's host "
               f"{issuer_url.hostname}, and the pods read the client's address from {header}")
    if header and not fronted:
        print(f"  note: TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER={header} but no Ingress here routes to the "
              "token endpoint: whatever is in front must set that header on every request")
    if not issuer.startswith("https://"):
        fail(f"k8s TOKEN_ENDPOINT_ISSUER {issuer!r} is not https")
    if "TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER" in env:
        fail("k8s sets TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER: an http:// issuer is for a local stack only")

    # NetworkPolicies: they must select these pods and open the port they
    # listen on, or the ingress controller is cut off.
    cport = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    policies = [(f, n, d) for (k, n), (f, d) in sorted(objects.items()) if k == "NetworkPolicy"]
    before = len(failures)
    for fname, name, pol in policies:
        sel = pol["spec"].get("podSelector", {}).get("matchLabels", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            fail(f"k8s/{fname}: NetworkPolicy {name} selects {sel or 'every pod'}, not the "
                 f"token endpoint's pods {selector}")
        for rule in pol["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if p.get("port") not in set(cport) | set(cport.values()):
                    fail(f"k8s/{fname}: NetworkPolicy {name} opens port {p.get('port')}, but the "
                         f"pods listen on {', '.join(f'{k} ({v})' for k, v in cport.items())}")
    if policies and len(failures) == before:
        ok(f"NetworkPolicy {', '.join(n for _, n, _ in policies)}: selects the Deployment's pods, "
           f"opens their port {', '.join(map(str, cport.values()))}")


# --- clients.toml -----------------------------------------------------------------


def cmd_clients():
    path = os.path.join(DEPLOY, "config", "clients.toml")
    with open(path, "rb") as f:
        try:
            reg = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            fail(f"{rel(path)}: {e}")
            finish()
    clients = reg.get("clients", [])
    if not clients:
        fail(f"{rel(path)} registers no client")
    for c in clients:
        for field in ("client_id", "token_endpoint_auth_method", "audience"):
            if field not in c:
                fail(f"{rel(path)}: client {c.get('client_id')} has no {field}")
        if c.get("token_endpoint_auth_method") == "none" and "client_secret_sha256" in c:
            fail(f"{rel(path)}: public client {c['client_id']} has a secret")
    if not any(c.get("token_endpoint_auth_method") == "none" for c in clients):
        fail(f"{rel(path)} has no public client")
    if not failures:
        ok(f"{rel(path)}: {len(clients)} client(s), " + ", ".join(
            f"{c['client_id']} ({c['token_endpoint_auth_method']})" for c in clients))
    finish()


# --- Dockerfile rehearsal -----------------------------------------------------------


def dockerignore_filter(root):
    """The files of the build context, as Docker's .dockerignore selects them:
    patterns in order, the last that matches a path decides, "!" re-includes,
    a pattern matching a directory matches everything under it."""
    patterns = []
    path = os.path.join(root, ".dockerignore")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = line[1:] if neg else line
                patterns.append((neg, os.path.normpath(pat.strip("/"))))

    def matches(pat, p):
        parts = p.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pat):
                return True
            if pat.startswith("**/") and any(
                    fnmatch.fnmatchcase("/".join(parts[j:i]), pat[3:]) for j in range(i)):
                return True
        return False

    included = []
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in (".git", "target")]
        for fn in filenames:
            p = fn if reldir == "." else f"{reldir}/{fn}"
            keep = True
            for neg, pat in patterns:
                if matches(pat, p):
                    keep = neg
            if keep:
                included.append(p)
    return included


def cmd_dockerfile():
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    stages = [i for i, (w, _) in enumerate(instructions) if w == "FROM"]
    build = instructions[stages[0]:stages[1] if len(stages) > 1 else None]

    context = dockerignore_filter(ROOT)
    for secret in ("deploy/config/signing-key.pem",):
        if secret in context:
            fail(f"{secret} would be sent in the build context")
    if any(p.startswith(("target/", ".git/")) for p in context):
        fail("target/ or .git/ would be sent in the build context")
    ok(f".dockerignore lets {len(context)} files into the context (no target/, .git, keys)")

    with tempfile.TemporaryDirectory() as ctx, tempfile.TemporaryDirectory() as fs:
        for p in context:
            os.makedirs(os.path.dirname(os.path.join(ctx, p)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, p), os.path.join(ctx, p))
        workdir = fs
        stubbed = False
        for word, rest in build:
            if word == "WORKDIR":
                workdir = os.path.join(fs, rest.lstrip("/"))
                os.makedirs(workdir, exist_ok=True)
            elif word == "COPY" and "--from" not in rest:
                *sources, dest = rest.split()
                target = os.path.join(workdir, dest)
                for s in sources:
                    src = os.path.join(ctx, s)
                    if not os.path.exists(src):
                        fail(f"COPY {s}: not in the build context (.dockerignore?)")
                        continue
                    if os.path.isdir(src):
                        shutil.copytree(src, target, dirs_exist_ok=True)
                    else:
                        to = target if not dest.endswith("/") and len(sources) == 1 else os.path.join(target, os.path.basename(s))
                        os.makedirs(os.path.dirname(to), exist_ok=True)
                        shutil.copy2(src, to)
            elif word == "RUN":
                if re.search(r"\bcargo (fetch|build)\b", rest):
                    if not stubbed:
                        # The first cargo fetch/build: stand in for it.
                        r = subprocess.run(["cargo", "fetch", "--locked"], cwd=workdir,
                                           capture_output=True, text=True)
                        if r.returncode != 0:
                            fail("the build stage's first cargo step would fail:\n" + r.stderr.strip())
                        else:
                            ok("stub layer: with only what the Dockerfile copied and stubbed, "
                               "`cargo fetch --locked` resolves the workspace (lock up to date)")
                        stubbed = True
                    continue
                if not stubbed:
                    # The stub-making RUN, with the build's absolute paths
                    # (cargo metadata's src_path) landing in the temp tree.
                    r = subprocess.run(["bash", "-o", "pipefail", "-c", rest], cwd=workdir,
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        fail(f"RUN {rest[:60]}...: {r.stderr.strip()}")
        # After the last COPY, the sources cargo builds are all there.
        missing = [p for p in subprocess.run(["git", "ls-files", "src"], cwd=ROOT, capture_output=True,
                                             text=True).stdout.split()
                   if not os.path.exists(os.path.join(workdir, p))]
        if missing:
            fail(f"files of src/ missing from the build stage: {', '.join(missing)}")
        else:
            ok("after the last COPY every tracked file of src/ is in the build stage")
        r = subprocess.run(["cargo", "fetch", "--locked"], cwd=workdir, capture_output=True, text=True)
        if r.returncode != 0:
            fail("with the real sources, `cargo fetch --locked` fails:\n" + r.stderr.strip())
    finish()


if __name__ == "__main__":
    commands = {
        "metrics": cmd_metrics, "grafana": cmd_grafana, "compose": cmd_compose,
        "k8s": cmd_k8s, "clients": cmd_clients, "dockerfile": cmd_dockerfile,
    }
    if len(sys.argv) == 3 and sys.argv[1] == "promql":
        cmd_promql(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] in commands:
        commands[sys.argv[1]]()
    else:
        sys.exit(__doc__)
