#!/usr/bin/env python3
"""Parses wrk and go test output for bench/perf/run.sh and writes the
markdown report.

    report.py parse-wrk ID PAGE ROUND FILE [CPU_MS]
        -> "ID PAGE ROUND rps p50ms p99ms maxms bad cpu_ms requests"
       (CPU_MS: the server process's CPU time over the run, "nan" if not given)
    report.py report --work DIR --date D --commit C --machine M --setup S --command CMD
"""
import argparse
import os
import re
import statistics
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_wrk(ident, page, rnd, path, cpu_ms="nan"):
    text = open(path).read()
    n = re.search(r"^\s*(\d+) requests in", text, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    mx = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        bad += sum(int(x) for x in m.groups())
    print(ident, page, rnd,
          rps.group(1) if rps else "nan",
          "%.3f" % to_ms(p50.group(1)) if p50 else "nan",
          "%.3f" % to_ms(p99.group(1)) if p99 else "nan",
          "%.3f" % to_ms(mx.group(1)) if mx else "nan",
          bad, cpu_ms, n.group(1) if n else "nan")


# Row id -> (target, client label, server process for RSS).
ROWS = [
    ("respond", "Caddy `respond` (ceiling)", "any (identity)", "respond"),
    ("ce-identity", "craftedge hit", "identity", "ce-hit"),
    ("ce-gzip", "craftedge hit", "gzip", "ce-hit"),
    ("ce-browser", "craftedge hit", "browser (gets zstd)", "ce-hit"),
    ("ch-identity", "Caddy + cache-handler hit", "identity", "cache-handler"),
    ("ch-browser", "Caddy + cache-handler hit", "browser", "cache-handler"),
    ("nx-identity", "nginx proxy_cache hit", "identity", "nginx"),
    ("nx-browser", "nginx proxy_cache hit", "browser", "nginx"),
    ("nxgz-browser", "nginx proxy_cache hit, `gzip on`", "browser (gets gzip)", "nginx"),
    ("snap-identity", "craftedge snapshot (memory empty)", "identity", "ce-snap"),
    ("snap-browser", "craftedge snapshot (memory empty)", "browser (gets zstd)", "ce-snap"),
    ("base-identity", "craftedge hit, baseline", "identity", "ce-base"),
    ("base-gzip", "craftedge hit, baseline", "gzip", "ce-base"),
    ("base-browser", "craftedge hit, baseline", "browser (gets zstd)", "ce-base"),
]
PAGES = [("p10k", "10 KiB"), ("p100k", "100 KiB")]


def read_kv(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            parts = line.split(None, 1)
            if len(parts) == 2:
                out.setdefault(parts[0], []).append(parts[1].strip())
    return out


def fmt_rps(v):
    if v != v:
        return "n/a"
    return "%.0f" % v if v < 1000 else "{:,.0f}".format(v)


def fmt_ms(v):
    if v != v:
        return "n/a"
    return "%.2f" % v if v < 10 else "%.0f" % v


def gobench(path):
    """Benchmark name -> {unit: value} (last run of each name)."""
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        if not line.startswith("Benchmark"):
            continue
        f = line.split()
        name = re.sub(r"-\d+$", "", f[0])
        vals = {}
        for i in range(2, len(f) - 1, 2):
            try:
                vals[f[i + 1]] = float(f[i])
            except ValueError:
                pass
        out[name] = vals
    return out


def lines(path):
    """The lines of path, none when a step did not run."""
    return open(path).readlines() if os.path.exists(path) else []


def report(a):
    w = a.work
    res = {}
    by_round = {}
    for line in lines(os.path.join(w, "results.tsv")):
        f = line.split()
        ident, page, rnd, rps, p50, p99, mx, bad = f[:8]
        cpu_us = float("nan")
        if len(f) >= 10 and f[8] != "nan" and f[9] != "nan" and float(f[9]) > 0:
            cpu_us = float(f[8]) * 1000 / float(f[9])
        res.setdefault((ident, page), []).append(
            (float(rps), float(p50), float(p99), float(mx), int(bad), cpu_us))
        by_round[(ident, page, rnd)] = float(rps)

    def ratio(ident, page):
        """Median over rounds of req/s over respond's req/s in the same round."""
        rs = [v / by_round[("respond", page, rnd)] for (i, p, rnd), v in by_round.items()
              if i == ident and p == page and by_round.get(("respond", page, rnd))]
        return statistics.median(rs) if rs else float("nan")
    bodies = {}
    for line in lines(os.path.join(w, "bodies.tsv")):
        ident, page, size, coding = line.split()
        bodies[(ident, page)] = (int(size), coding)
    rss = {k: int(v[0]) for k, v in read_kv(os.path.join(w, "rss.tsv")).items()}
    gb = gobench(os.path.join(w, "gobench.out"))

    def med(ident, page):
        rs = res.get((ident, page), [])
        if not rs:
            return None
        return dict(
            rps=statistics.median(r[0] for r in rs),
            p50=statistics.median(r[1] for r in rs),
            p99=statistics.median(r[2] for r in rs),
            bad=sum(r[4] for r in rs),
            cpu=statistics.median(r[5] for r in rs),
            n=len(rs),
            spread=(min(r[0] for r in rs), max(r[0] for r in rs)))

    P = print
    P("# craftedge performance suite")
    P()
    P("- date: %s, commit: `%s`" % (a.date, a.commit))
    P("- machine: %s (noisy, loopback only; load average at start -> end: %s)" % (a.machine, a.load))
    P("- setup: %s" % a.setup)
    P("- command: `%s`" % a.command.strip())
    if a.baseline:
        P("- baseline: the \"baseline\" rows are craftedge built at `%s` (BASELINE), measured in the same rounds" % a.baseline)
    P()
    if not res:
        P("(Hit rows not measured in this run: STEPS=\"%s\".)" % a.steps)
        P()
    else:
        P("## Cache hits versus Caddy's `respond`")
        P()
        P("req/s: median of the rounds (min-max in brackets); p50/p99: wrk latency, median of the rounds; "
          "ratio: req/s over Caddy `respond` of the same page in the same round, median of the rounds; "
          "CPU/req: the server process's user + system CPU time over the round divided by wrk's requests, median of the rounds "
          "(clock ticks of 10 ms: about 1% resolution at these rates); peak RSS: VmHWM of the server process "
          "over the whole run, both pages (nginx: master + worker). `browser` sends "
          "`Accept-Encoding: gzip, deflate, br, zstd`.")
        P()
        for page, label in PAGES:
            ceil = med("respond", page)
            P("### %s page" % label)
            P()
            P("| target | client | bytes sent | req/s | p50 ms | p99 ms | ratio to respond | CPU/req | peak RSS |")
            P("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for ident, target, client, server in ROWS:
                m = med(ident, page)
                if m is None:
                    continue
                size, coding = bodies.get((ident, page), (0, "?"))
                r = ratio(ident, page)
                flag = " (%d errors/non-2xx)" % m["bad"] if m["bad"] else ""
                P("| %s | %s | %s%s | %s [%s-%s]%s | %s | %s | %.2fx | %s | %s |" % (
                    target, client, "{:,}".format(size), "" if coding == "identity" else " " + coding,
                    fmt_rps(m["rps"]), fmt_rps(m["spread"][0]), fmt_rps(m["spread"][1]), flag,
                    fmt_ms(m["p50"]), fmt_ms(m["p99"]), r,
                    "n/a" if m["cpu"] != m["cpu"] else "%.0f µs" % m["cpu"],
                    "%.0f MiB" % (rss[server] / 1024) if server in rss else "n/a"))
            P()
    extra = read_kv(os.path.join(w, "extra.tsv"))
    if extra.get("snap_served"):
        P("Snapshot rows: the craftedge process was restarted with its origin unreachable (nothing "
          "listens on the upstream port), so its memory tier started empty; the first snapshot serve of "
          "each page reads it from bbolt and promotes it into memory (marked as a snapshot, never fresh: "
          "%s memory entries after the rounds), later serves read the promoted copy; %s snapshot serves, "
          "each labelled `detail=snapshot`. The circuit breaker opens after the first 5 failures, so the "
          "origin is not dialled per request (a probe every 30 s)." % (
              extra.get("snap_memory_entries", ["?"])[0], extra["snap_served"][0]))
        P()

    # Targets.
    P("## Targets")
    P()
    P("| target | goal | measured | |")
    P("|---|---|---|---|")

    def row(name, goal, measured, ok):
        P("| %s | %s | %s | %s |" % (name, goal, measured,
                                      "n/a" if ok is None else "met" if ok else "**missed**"))

    for page, label in PAGES:
        ceil = med("respond", page)
        if not ceil:
            continue
        for ident, goal, need in (("ce-identity", ">= 0.95x respond", 0.95), ("ce-browser", ">= 0.90x respond", 0.90)):
            m = med(ident, page)
            if m:
                r = ratio(ident, page)
                row("craftedge hit, %s, %s" % (ident.split("-")[1], label), goal, "%.2fx" % r, r >= need)
        # Issue 16: a hit copies only the variant it sends.
        for ident, need in (("ce-identity", 1.1),) + ((("ce-gzip", 1.5), ("ce-browser", 1.5)) if page == "p100k" else ()):
            m = med(ident, page)
            if m:
                r = ratio(ident, page)
                base = ""
                bm = med("base-" + ident.split("-")[1], page)
                if bm:
                    base = "; baseline %.2fx (CPU %s/req)" % (ratio("base-" + ident.split("-")[1], page),
                                                             "n/a" if bm["cpu"] != bm["cpu"] else "%.0f µs" % bm["cpu"])
                row("craftedge hit, %s, %s (issue 16)" % (ident.split("-")[1], label), ">= %.1fx respond" % need,
                    "%.2fx (CPU %s/req)%s" % (r, "n/a" if m["cpu"] != m["cpu"] else "%.0f µs" % m["cpu"], base), r >= need)
        for ce, other, what in (("ce-identity", "ch-identity", "cache-handler, identity"),
                                ("ce-browser", "ch-browser", "cache-handler, browser"),
                                ("ce-browser", "nxgz-browser", "nginx `gzip on`, browser")):
            m, o = med(ce, page), med(other, page)
            if m and o:
                row("craftedge ahead of %s, %s" % (what, label), "faster",
                    "%.1fx (%s vs %s req/s)" % (m["rps"] / o["rps"], fmt_rps(m["rps"]), fmt_rps(o["rps"])),
                    m["rps"] > o["rps"])
    pb = gb.get("BenchmarkPurgeTag100k", {})
    pc = gb.get("BenchmarkPurgeTagConcurrentHits", {})
    if pb:
        row("purge of one tag, 100,000 entries (in-process)", "< 100 ms",
            "%.1f ms (worst %.1f ms); tag index cleaned up in the background %.0f ms after the start" % (
                pb.get("purge-ms", float("nan")), pb.get("purge-max-ms", float("nan")),
                pb.get("cleanup-ms", float("nan"))), pb.get("purge-ms", 1e9) < 100)
    if pc:
        row("hit p99 during that purge and its cleanup (in-process)", "< 2x idle p99", "%.2fx (%.0f us vs %.0f us)" % (
            pc.get("p99-ratio", float("nan")), pc.get("during-p99-us", float("nan")), pc.get("idle-p99-us", float("nan"))),
            pc.get("p99-ratio", 1e9) < 2)
    purge = read_kv(os.path.join(w, "purge.tsv"))
    pw = {}
    for v in purge.get("wrk", []):
        f = v.split()
        pw[f[0]] = f
    if purge.get("seconds"):
        secs = float(purge["seconds"][0])
        row("purge of one tag, 100,000 entries (admin API)", "< 100 ms", "%.0f ms" % (secs * 1000), secs < 0.1)
        if "idle" in pw and "during" in pw:
            r = float(pw["during"][5]) / float(pw["idle"][5])
            row("hit p99 during that purge (wrk, 2 s windows)", "< 2x idle p99", "%.2fx (%s ms vs %s ms)" % (
                r, fmt_ms(float(pw["during"][5])), fmt_ms(float(pw["idle"][5]))), r < 2)
    mems = []
    for label in ("default", "nolimit", "memlimit"):
        kv = read_kv(os.path.join(w, "mem-%s.tsv" % label))
        if kv:
            m = {k: v[0] for k, v in kv.items()}
            m["wrk"] = kv.get("wrk", [None])[0]
            mems.append(m)
    for mem in mems:
        lim = "" if mem["env"] == "none" else ", " + mem["env"]
        bound = int(mem["bound_mib"]) * 1024
        over = int(mem["hwm_kb"]) - int(mem["base_rss_kb"]) - bound
        row("memory bound, working set 4x (server%s)" % lim, "cache bytes <= `memory`",
            "max %.1f MiB of %.0f MiB" % (int(mem["cache_bytes_max"]) / 2**20, int(mem["max_bytes"]) / 2**20),
            int(mem["cache_bytes_max"]) <= int(mem["max_bytes"]))
        allow = int(a.mem_overhead) * 1024
        peak = int(mem["max_anon_kb"])
        row("RSS, working set 4x (server%s): anonymous" % lim,
            "peak <= bound + %s MiB" % a.mem_overhead,
            "peak %.0f MiB = bound %d + %.0f MiB (idle process: %.0f MiB)" % (
                peak / 1024, bound // 1024, (peak - bound) / 1024, int(mem["base_anon_kb"]) / 1024),
            peak <= bound + allow)
        row("RSS, working set 4x (server%s): VmHWM incl. bbolt mmap" % lim, "(informative)",
            "idle %.0f + bound %d %s %.0f MiB = peak %.0f MiB" % (
                int(mem["base_rss_kb"]) / 1024, bound // 1024, "+" if over >= 0 else "-", abs(over) / 1024,
                int(mem["hwm_kb"]) / 1024), None)
    ack = gb.get("BenchmarkWebhookAck", {})
    if "p50-µs" in ack:
        row("webhook acknowledgement latency (p99)", "< 100 ms (acknowledged within milliseconds)",
            "p50 %.1f ms, p99 %.1f ms" % (ack["p50-µs"] / 1000, ack.get("p99-µs", float("nan")) / 1000),
            ack.get("p99-µs", float("inf")) < 100000)
    else:
        row("webhook acknowledgement latency", "< 100 ms", "not measured (the Go step did not run)", None)
    P()

    # Purge.
    P("## Purge: one tag covering 100,000 entries")
    P()
    if pb or pc:
        P("In-process (`go test -run '^$' -bench PurgeTag -benchtime %s ./pagecache`): 100,000 entries "
          "of 512-byte bodies, each with its own entry tag plus the shared tag, in a 256 MiB memory tier; "
          "hits are Get+Decode of 1,000 hot 10 KiB entries (with gzip and zstd variants) on GOMAXPROCS-1 "
          "goroutines, the purge on another." % a.benchtime)
        P()
        P("| measure | value |")
        P("|---|---:|")
        for k, label in (("purge-ms", "PurgeTags alone, mean ms (then no purged entry is served)"),
                         ("purge-max-ms", "PurgeTags alone, worst ms"),
                         ("cleanup-ms", "until the background cleanup unlinked them from the tag index, mean ms")):
            if k in pb:
                P("| %s | %.1f |" % (label, pb[k]))
        for k, label in (("purge-ms", "PurgeTags under concurrent hits, mean ms"),
                         ("cleanup-ms", "its cleanup under concurrent hits, mean ms"),
                         ("idle-p50-us", "hit p50 idle, us"), ("idle-p99-us", "hit p99 idle, us"),
                         ("during-p50-us", "hit p50 during purge + cleanup, us"),
                         ("during-p99-us", "hit p99 during purge + cleanup, us"),
                         ("during-max-us", "hit max during purge + cleanup, us"), ("p99-ratio", "p99 during / idle"),
                         ("hits-during", "hits sampled during each purge + cleanup")):
            if k in pc:
                P("| %s | %s |" % (label, ("%.2f" % pc[k]) if pc[k] < 100 else "{:,.0f}".format(pc[k])))
        P()
    if purge.get("seconds"):
        P("Over HTTP (full run, or STEPS with purge): a craftedge server (CPU %s) filled with %s memory entries "
          "(`/bulk/N`, 1 KiB pages tagged `bulk`), then `POST /craftedge/purge {\"tags\":[\"bulk\"]}` "
          "on the admin API while wrk hits the 10 KiB page (browser client); the admin call includes "
          "the bbolt commit that marks the tag's snapshots stale." % (a.server_cpu, purge["entries"][0]))
        P()
        P("| measure | value |")
        P("|---|---:|")
        P("| purge response | `%s` |" % purge["response"][0])
        P("| admin call time | %.0f ms |" % (float(purge["seconds"][0]) * 1000))
        if purge.get("cleanup_ms_after"):
            P("| tag index cleanup done (`purge_pending` 0 in health, polled every 20 ms) | %s ms after the call |"
              % purge["cleanup_ms_after"][0])
        for k, label in (("idle", "hits, idle 2 s"), ("during", "hits, 2 s around the purge")):
            if k in pw:
                f = pw[k]
                P("| %s: req/s, p50, p99, max | %s req/s, %s / %s / %s ms |" % (
                    label, fmt_rps(float(f[3])), fmt_ms(float(f[4])), fmt_ms(float(f[5])), fmt_ms(float(f[6]))))
        P("| page after the purge | `%s` |" % purge.get("after", ["?"])[0])
        P()

    # Memory.
    P("## Memory")
    P()
    rows = [(k.split("=")[1], v) for k, v in gb.items() if k.startswith("BenchmarkMemoryPerEntry/")]
    if rows:
        P("Per entry (`go test -run '^$' -bench MemoryPerEntry ./pagecache`): entries as the handler stores "
          "them (identity + gzip + zstd bodies, 3 headers, 3 tags + the implicit URL and host tags), "
          "filling a 256 MiB tier to about half. bigcache's queues are allocated whole at New, the size "
          "of the bound (pages become resident as entries are written), so the cost per entry beyond its "
          "encoded bytes is the live heap it adds outside the queues (bigcache's shard maps, our tag "
          "index) plus its framing inside them (bigcache's header, the key, our 8-byte slot header).")
        P()
        P("| body | stored (encoded) | outside the queues / entry | framing in the queue | overhead / entry | of which tag index | entries |")
        P("|---|---:|---:|---:|---:|---:|---:|")
        for size, v in rows:
            P("| %s | {:,.0f} B | {:,.0f} B | {:,.0f} B | {:,.0f} B | {:,.0f} B | {:,.0f} |".format(
                v.get("enc-B/entry", 0), v.get("outside-queue-B/entry", 0), v.get("in-queue-framing-B/entry", 0),
                v.get("overhead-B/entry", 0), v.get("index-B/entry", 0), v.get("entries", 0)) % size)
        P()
    rows = [(k.split("/", 1)[1], v) for k, v in gb.items() if k.startswith("BenchmarkMemoryBound4x/")]
    if rows:
        P("Working set 4x the bound, in-process (`-bench MemoryBound4x`): a 32 MiB tier, every key of "
          "a working set 4x larger stored twice over, without a memory limit (GOGC alone) and with the "
          "tier's soft memory limit (`SetMemoryLimit`, as the craftedge app runs it: bound + bound/16 + "
          "40 MiB = 74 MiB here). cache max is the most bytes bigcache held; live heap over bound is what "
          "the entries that fit cost beyond it (shard maps, tag index); peak heap in use includes garbage "
          "not yet collected; peak from the OS is the runtime's memory not returned to the OS (Sys - "
          "HeapReleased, sampled), over the test process's own before the tier and the bound.")
        P()
        P("| limit / body | cache max | entries that fit | evicted | live heap | over bound | over bound / entry | peak heap in use | peak from the OS, over process + bound |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, v in rows:
            # limit=on/body=10KiB -> "on, 10KiB"
            size = ", ".join(part.split("=")[-1] for part in name.split("/"))
            P("| %s | %.1f MiB | {:,.0f} | {:,.0f} | %.1f MiB | %.1f MiB | {:,.0f} B | %.1f MiB | %.1f MiB, +%.1f MiB |".format(
                v.get("entries", 0), v.get("evicted", 0), v.get("over-bound-B/entry", 0)) % (
                size, v.get("cache-max-MiB", 0), v.get("live-heap-MiB", 0), v.get("over-bound-MiB", 0),
                v.get("peak-heap-inuse-MiB", 0), v.get("peak-os-MiB", 0), v.get("peak-os-over-bound-MiB", 0)))
        P()
    if mems:
        P("Over HTTP: a craftedge server with `memory %s MiB`, wrk cycling through %s URLs of the 10 KiB "
          "page (~15 KiB stored each: ~4x the bound); nearly every request is a miss that stores and "
          "evicts. Run as shipped (craftedge sets Go's soft memory limit to bound + bound/16 + 40 MiB "
          "unless GOMEMLIMIT is set) and, in the full run, with `GOMEMLIMIT=off` (Go's GOGC=100 alone, "
          "as before the limit)." % (mems[0]["bound_mib"], mems[0]["keys"]))
        P()
        P("| measure | " + " | ".join(m["env"] if m["env"] != "none" else "as shipped (soft limit)" for m in mems) + " |")
        P("|---|" + "---:|" * len(mems))

        def line(label, f):
            P("| %s | %s |" % (label, " | ".join(f(m) for m in mems)))

        def mib(m, k):
            return "%.0f MiB" % (int(m[k]) / 1024)

        def wrkf(m):
            if not m["wrk"]:
                return "n/a"
            f = m["wrk"].split()
            return "%s req/s, p99 %s ms" % (fmt_rps(float(f[3])), fmt_ms(float(f[5])))
        line("requests (misses that store)", wrkf)
        line("stores / entries at the end / evicted", lambda m: "{:,} / {:,} / {:,}".format(
            int(m["stores"]), int(m["entries"]), int(m["evicted"])))
        line("cache bytes, max sampled / bound", lambda m: "%.1f / %.0f MiB" % (
            int(m["cache_bytes_max"]) / 2**20, int(m["max_bytes"]) / 2**20))
        line("RSS idle before load (anonymous)", lambda m: "%s (%s)" % (mib(m, "base_rss_kb"), mib(m, "base_anon_kb")))
        line("peak anonymous RSS (sampled every 0.5 s)", lambda m: mib(m, "max_anon_kb"))
        line("peak anonymous RSS over idle + bound", lambda m: "%+.0f MiB" % (
            (int(m["max_anon_kb"]) - int(m["base_anon_kb"])) / 1024 - int(m["bound_mib"])))
        line("peak RSS (VmHWM, incl. file-backed)", lambda m: mib(m, "hwm_kb"))
        line("RSS at the end: anonymous / file-backed (bbolt mmap)", lambda m: "%s / %s" % (
            mib(m, "rss_anon_kb"), mib(m, "rss_file_kb")))
        P()
    P("## Webhook acknowledgement latency")
    P()
    if "p50-µs" in ack:
        P("`go test -run '^$' -bench WebhookAck -benchtime 1000x ./caddymodule/webhookhandler`: 1,000 signed Standard Webhooks "
          "deliveries, one after another, to `craftedge_webhook` through a real Caddy on loopback (both CPUs): "
          "verified, checked against the replay memory in bbolt, answered 202 once the refetch job is durably "
          "enqueued, while the refetches run against the vendor simulator.")
        P()
        P("| measure | value |")
        P("|---|---:|")
        P("| acknowledgement p50 | %.1f ms |" % (ack["p50-µs"] / 1000))
        P("| acknowledgement p99 | %.1f ms |" % (ack.get("p99-µs", float("nan")) / 1000))
        P("| mean per delivery (ns/op) | %.1f ms |" % (ack.get("ns/op", float("nan")) / 1e6))
        P()
        P("The time is the bbolt commits (the replay memory and the job enqueue, each two fdatasyncs), not the "
          "signature check.")
    else:
        P("Not measured: the Go benchmark step did not run (ONLY set, or STEPS without go).")
    P()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "parse-wrk":
        parse_wrk(*sys.argv[2:7])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    for k in ("work", "date", "commit", "machine", "setup", "command", "load"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--benchtime", default="?")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--mem-overhead", default="48")
    ap.add_argument("--steps", default="hits purge memory go")
    ap.add_argument("--baseline", default="")
    report(ap.parse_args())


if __name__ == "__main__":
    main()
