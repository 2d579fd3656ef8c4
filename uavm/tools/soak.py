"""`uavm soak`: start the app, send it many sequential and concurrent requests, check
every answer, and report the server's memory (not a test: it prints figures)."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ..files import memory_mb as _rss_mb
from .localapp import LocalApp


def soak(clips: list, sequential: int = 300, concurrent: int = 8, rounds: int = 5, fresh: int = 300,
         idle: float = 60.0, log=print) -> dict:
    from gradio_client import Client, handle_file

    work = tempfile.mkdtemp(prefix="uavm-soak-")
    app = LocalApp(work, timeout=150)
    url, proc = app.url, app.proc
    try:
        client = Client(url, verbose=False)
        settings = [dict(), dict(audio_on=False), dict(video_on=False), dict(mute_from=2.0, mute_to=5.0),
                    dict(blank_from=1.0, blank_to=4.0)]
        jobs = [(c, s) for c in clips for s in settings]
        want = {}
        for c, s in jobs:  # reference answers (and the warm-up: every clip decoded once)
            want[(c, json.dumps(s))] = client.predict(handle_file(str(c)), api_name="/predict", **s)["fused"]["logits"]
        warm = _rss_mb(proc.pid)
        log(f"warm: {warm}")

        def ask(i):
            c, s = jobs[i % len(jobs)]
            got = client.predict(handle_file(str(c)), api_name="/predict", **s)
            return got["fused"]["logits"] == want[(c, json.dumps(s))]

        t0, right = time.time(), 0
        for i in range(sequential):
            right += ask(i)
        t_seq = time.time() - t0
        after_seq = _rss_mb(proc.pid)
        log(f"{sequential} sequential: {right} right, {t_seq:.1f} s, {after_seq}")
        t0 = time.time()
        clients = [Client(url, verbose=False) for _ in range(concurrent)]

        def burst(k):
            ok = 0
            for r in range(rounds):
                c, s = jobs[(k * rounds + r) % len(jobs)]
                got = clients[k].predict(handle_file(str(c)), api_name="/predict", **s)
                ok += got["fused"]["logits"] == want[(c, json.dumps(s))]
            return ok

        with ThreadPoolExecutor(concurrent) as ex:
            conc_right = sum(ex.map(burst, range(concurrent)))
        t_conc = time.time() - t0
        # one-shot clients: each a new session that asks once and goes away
        before_fresh, t0, fresh_right, half = _rss_mb(proc.pid), time.time(), 0, None
        for i in range(fresh):
            if i == fresh // 2:
                half = _rss_mb(proc.pid)  # the first half warms the allocator; the second shows a leak
            c, s = jobs[i % len(jobs)]
            got = Client(url, verbose=False).predict(handle_file(str(c)), api_name="/predict", **s)
            fresh_right += got["fused"]["logits"] == want[(c, json.dumps(s))]
        t_fresh = time.time() - t0
        after_fresh = _rss_mb(proc.pid)
        time.sleep(idle)  # the server drops idle API sessions: what stays is what leaks
        end = _rss_mb(proc.pid)
        report = {"clips": len(clips), "settings": len(settings), "sequential": sequential,
                  "sequential_right": right, "sequential_seconds": round(t_seq, 1),
                  "concurrent_clients": concurrent, "concurrent_requests": concurrent * rounds,
                  "concurrent_right": conc_right, "concurrent_seconds": round(t_conc, 1),
                  "fresh_clients": fresh, "fresh_right": fresh_right, "fresh_seconds": round(t_fresh, 1),
                  "rss_before_fresh_clients_mb": round(before_fresh["VmRSS"], 1),
                  "rss_growth_over_fresh_clients_mb": round(after_fresh["VmRSS"] - before_fresh["VmRSS"], 1),
                  "rss_growth_over_second_half_mb": round(after_fresh["VmRSS"] - (half or before_fresh)["VmRSS"], 1),
                  f"rss_growth_{idle:g}s_later_mb": round(end["VmRSS"] - before_fresh["VmRSS"], 1),
                  "rss_warm_mb": round(warm["VmRSS"], 1), "rss_end_mb": round(end["VmRSS"], 1),
                  "rss_growth_after_warmup_mb": round(end["VmRSS"] - warm["VmRSS"], 1),
                  "peak_rss_mb": round(end["VmHWM"], 1)}
        return report
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)
