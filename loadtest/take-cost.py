#!/usr/bin/env python3
"""What the take costs Redis, piece by piece (issue 16's decomposition).

Starts a private redis-server, stores one code record, and runs
`redis-benchmark` on `EVALSHA` of variants of the Lua take the service used
until 2026-11-30 (`take_code.lua`, read from git history: commit fe9fd6b)
with its keys and arguments, and on the native commands that replaced it,
reading Redis's own `usec_per_call` (INFO commandstats) for each. The
variants that take the code cannot run 200,000 times on one record, so the
whole script is measured without its `DEL` (the record stays); `GETDEL` is
the least a take can cost. (`MULTI`/`EXEC` cannot be driven by
redis-benchmark; `loadtest/run.sh` reports them under load.)

    python3 loadtest/take-cost.py [ROUNDS]      (default 3; needs redis-server, redis-benchmark)
"""
import json, re, socket, subprocess, sys, tempfile, time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


PORT = free_port()
workdir = tempfile.mkdtemp()
server = subprocess.Popen(
    ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
     "--appendonly", "no", "--dir", workdir],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cli(*args):
    return subprocess.run(["redis-cli", "-p", str(PORT), *args],
                          capture_output=True, text=True).stdout.strip()


for _ in range(50):
    if cli("PING") == "PONG":
        break
    time.sleep(0.1)

RECORD = json.dumps({
    "client_id": "loadtest", "redirect_uri": "https://app.test/cb",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM",
    "code_challenge_method": "S256", "sub": "alice", "scope": "openid profile",
    "auth_time": 1764400000, "nonce": "n-0S6_WzA2Mj", "iat": 1764400000,
})
KEYS = ["oauth:code:{abc}", "oauth:used:{abc}"]
ARGS = ["loadtest", "1", "https://app.test/cb",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "0", "gid 1764400600", "600"]
cli("SET", KEYS[0], RECORD)

take = subprocess.run(["git", "show", "fe9fd6b:src/store/take_code.lua"],
                      capture_output=True, text=True, check=True).stdout
keep = take.replace("redis.call('DEL', KEYS[1])\nredis.call('SET'", "redis.call('SET'")
assert keep != take, "take_code.lua changed: update the DEL this script removes"
no_sha = keep.replace(
    "if redis.sha1hex(rec.code_challenge) ~= redis.sha1hex(expected) then",
    "if rec.code_challenge ~= expected then")
assert no_sha != keep, "take_code.lua changed: update the sha1hex this script removes"
VARIANTS = [
    ("EVALSHA of `return 1`, same keys and arguments", "return 1"),
    ("+ GET the record", "local raw = redis.call('GET', KEYS[1]); return 1"),
    ("+ cjson.decode of it", "local raw = redis.call('GET', KEYS[1]); local rec = cjson.decode(raw); return 1"),
    ("GET + SET the used marker (EX), return the record",
     "local raw = redis.call('GET', KEYS[1]); redis.call('SET', KEYS[2], ARGV[7], 'EX', ARGV[8]); return {'taken', raw}"),
    ("take_code.lua without its DEL", keep),
    ("the same, comparing without sha1hex", no_sha),
]


def per_call(command, args):
    cli("CONFIG", "RESETSTAT")
    subprocess.run(["redis-benchmark", "-p", str(PORT), "-c", "8", "-n", "200000", "-q",
                    command, *args], capture_output=True, check=True)
    stats = cli("INFO", "commandstats")
    m = re.search(rf"cmdstat_{command.lower()}:calls=\d+,usec=\d+,usec_per_call=([\d.]+)", stats)
    return float(m.group(1))


try:
    results = {name: [] for name, _ in VARIANTS}
    results["GETDEL (native, for reference)"] = []
    results["GET of the record (native, the take's first step)"] = []
    results["SET of the used marker EX NX (native, in the MULTI)"] = []
    results["PTTL of the record (native, beside GET with REPLICA_ACKS > 0)"] = []
    for _ in range(ROUNDS):
        for name, source in VARIANTS:
            sha = cli("SCRIPT", "LOAD", source)
            results[name].append(per_call("EVALSHA", [sha, "2", *KEYS, *ARGS]))
        # GETDEL of a missing key after the first: the command's own cost.
        results["GETDEL (native, for reference)"].append(per_call("GETDEL", ["oauth:code:{gone}"]))
        results["GET of the record (native, the take's first step)"].append(per_call("GET", [KEYS[0]]))
        results["SET of the used marker EX NX (native, in the MULTI)"].append(
            per_call("SET", [KEYS[1], ARGS[6], "EX", ARGS[7], "NX"]))
        results["PTTL of the record (native, beside GET with REPLICA_ACKS > 0)"].append(
            per_call("PTTL", [KEYS[0]]))
    print(f"Redis CPU per call, µs (Redis's usec_per_call), {ROUNDS} rounds:")
    for name, values in results.items():
        print(f"  {name:50s} {' '.join(f'{v:6.2f}' for v in values)}")
finally:
    server.terminate()
    server.wait()
