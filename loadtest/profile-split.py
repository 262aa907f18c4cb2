#!/usr/bin/env python3
"""Split a `perf script -F ip,sym,dso` of the service into where its CPU goes.

Each sample is put in the first category whose pattern matches any frame of
its stack (signing first, so a getrandom inside a signature is signing);
samples whose top frame is in the kernel are counted as socket I/O of the
HTTP or Redis path they were called from. Used by loadtest/profile.sh.
"""
import sys, collections, re
cats = collections.Counter(); total = 0
rules = [
 ("random ids (the system RNG)", re.compile(r"random_ids")),
 ("DPoP proof check (src/dpop: JWS, JWK, signature, thumbprint)", re.compile(r"token_endpoint::dpop::")),
 ("signing (ECDSA/EdDSA/RSA, SHA)", re.compile(r"try_sign|aws_lc|ecp_nistz|ring::|bignum|sha256_block|sha512_block|Signer")),
 ("Redis client (redis-rs)", re.compile(r"redis::")),
 ("JSON (serde_json) and base64", re.compile(r"serde_json|base64")),
 ("request parsing + PKCE", re.compile(r"TokenForm|TokenRequest|decode_component|pkce")),
 ("metrics (prometheus)", re.compile(r"prometheus")),
 ("tracing (spans, events)", re.compile(r"tracing_core::|tracing_subscriber::")),
 ("CORS check and headers", re.compile(r"cors::")),
 ("abuse limiter", re.compile(r"abuse::|AuthFailureLimiter")),
 ("timers (tokio's wheel: body and Redis timeouts)", re.compile(r"tokio::runtime::time|TimerEntry")),
 ("HTTP (actix-http/web)", re.compile(r"actix_http|actix_web|h1::")),
]
sample=[]
def flush():
    global total
    if not sample: return
    total += 1
    stack = " ".join(sample)
    kernel_top = "[kernel" in sample[0] or "kallsyms" in sample[0]
    for name, rx in rules:
        if rx.search(stack):
            if kernel_top and name in ("Redis client (redis-rs)", "HTTP (actix-http/web)"):
                cats[name + ": kernel (socket I/O)"] += 1
            else:
                cats[name] += 1
            break
    else:
        if kernel_top: cats["kernel: other (epoll, scheduling, wakeups)"] += 1
        elif re.search(r"malloc|free|memmove|memcpy|memset", stack): cats["allocation / memcpy (unattributed)"] += 1
        elif re.search(r"tokio|actix_rt|actix_server|mio", stack): cats["runtime (tokio, actix-server)"] += 1
        else: cats["other"] += 1
    sample.clear()
for line in sys.stdin:
    line=line.rstrip("\n")
    if not line.strip():
        flush(); continue
    if line[0] not in " \t":
        flush(); continue  # header line
    sample.append(line.strip())
flush()
for k,v in cats.most_common():
    print(f"{v/total*100:5.1f}%  {k}")
print(total, "samples")
