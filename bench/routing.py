"""Address and pin routing: quality on dev and on the blind test split, and latency against
the router as it was before issue 12 (bench/routing_baseline.py), measured in the same run.

    python bench/routing.py            # figures + latency (about 20 s)
    python bench/routing.py --quick    # fewer latency rounds

Splits:
  dev   the sample grid (bot/areas/sample_grid.yaml) with the cases of tests/test_routing.py
        (ADDRESSES, DEV_KINDS, PINS) — the router was tuned on these.
  test  tests/data/grid_test_city.yaml with tests/data/routes_test.yaml, written blind by
        someone who never saw the router; nothing was tuned on it. Only aggregates are printed.

Figures:
  in-grid   in-grid addresses routed to exactly the expected unit (a zone counts as wrong)
  outside   addresses outside the grid that were routed anywhere (lower is better)
  pins      pins that land in the expected unit (or nowhere when expected nowhere)
  p50/p99   time per address, wall clock and CPU, with the normalisation caches cleared
            before each query (gazetteer loaded); both routers on the same queries, interleaved;
            "best" is each address's fastest wall time over the rounds (the machine is shared:
            wall p99 mostly measures other processes taking the CPU, for both routers alike)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench import routing_baseline as base  # noqa: E402
from bot.areas import routing as new  # noqa: E402
from bot.areas.grid_file import load_grid  # noqa: E402

SAMPLE = ROOT / "bot" / "areas" / "sample_grid.yaml"
TEST_GRID = ROOT / "tests" / "data" / "grid_test_city.yaml"
TEST_ROUTES = ROOT / "tests" / "data" / "routes_test.yaml"


def dev_split():
    from tests.test_routing import ADDRESSES, DEV_KINDS, PINS

    addrs = [(t, e, "dev-original" if e is not None else "outside") for t, e in ADDRESSES if t]
    addrs += list(DEV_KINDS)
    return load_grid(SAMPLE), addrs, list(PINS)


def test_split():
    doc = yaml.safe_load(TEST_ROUTES.read_text(encoding="utf-8"))
    addrs = [(a["address"], a.get("expect"), a.get("kind", "?")) for a in doc.get("addresses", [])]
    pins = [(p["lat"], p["lon"], p.get("expect")) for p in doc.get("pins", [])]
    return load_grid(TEST_GRID), addrs, pins


def score(router, addrs, pins):
    per_kind: dict[str, list[int]] = {}
    inn = [0, 0]
    out = [0, 0]
    for text, expect, kind in addrs:
        got = router.route_address(text).area_id
        k = per_kind.setdefault(kind, [0, 0])
        k[1] += 1
        if expect is None:
            out[1] += 1
            out[0] += got is not None
            k[0] += got is None
        else:
            inn[1] += 1
            inn[0] += got == expect
            k[0] += got == expect
    pin_ok = sum(router.route_point(la, lo).area_id == e for la, lo, e in pins)
    return inn, out, (pin_ok, len(pins)), per_kind


def pct(a, b):
    return f"{100.0 * a / b:5.1f}%" if b else "   - "


def latency(routers, texts, rounds):
    """Per-address wall and CPU (thread) time; one warm-up round; GC off while timing (it
    runs between queries in the bot too); the machine is shared, so CPU time is printed beside
    wall time."""
    import gc

    caches = [new.normalize_text, new._prepare, base.normalize_text]
    for t in texts:
        for r in routers.values():
            r.route_address(t)
    wall = {name: [] for name in routers}
    cpu = {name: [] for name in routers}
    gc.disable()
    try:
        for _ in range(rounds):
            for t in texts:
                for name, r in routers.items():
                    for c in caches:
                        c.cache_clear()
                    t0, c0 = time.perf_counter(), time.thread_time()
                    r.route_address(t)
                    c1, t1 = time.thread_time(), time.perf_counter()
                    wall[name].append(t1 - t0)
                    cpu[name].append(c1 - c0)
    finally:
        gc.enable()

    def q(xs, f):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * f))] * 1e3

    # each address's best wall time over the rounds: what it costs when nobody else has the CPU
    n = len(texts)
    best = {name: [min(wall[name][r * n + i] for r in range(rounds)) for i in range(n)] for name in routers}
    return {name: (q(wall[name], 0.5), q(wall[name], 0.99), q(cpu[name], 0.5), q(cpu[name], 0.99),
                   q(best[name], 0.5), q(best[name], 0.99)) for name in routers}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    splits = {"dev": dev_split()}
    if TEST_ROUTES.exists() and TEST_GRID.exists():
        splits["test"] = test_split()
    t0 = time.perf_counter()
    new.Router(splits["dev"][0])
    build_ms = (time.perf_counter() - t0) * 1e3
    results = {}
    routers = {}
    for split, (grid, addrs, pins) in splits.items():
        rb, rn = base.Router(grid), new.Router(grid)
        routers[split] = {"baseline": rb, "new": rn}
        results[split] = {"baseline": score(rb, addrs, pins), "new": score(rn, addrs, pins)}
        if split == "dev":
            print(f"home region of the sample grid: {rn.home.label} ({rn.home.how})")
        else:
            print(f"home region of the test grid:   {rn.home.label} ({rn.home.how})")
    print(f"router build with the gazetteer: {build_ms:.0f} ms (first, includes loading the gazetteer)\n")
    head = f"{'':26}" + "".join(f"{s + ' ' + r:>16}" for s in results for r in ("baseline", "new"))
    print(head)
    rows = [("in-grid → right unit", 0), ("outside routed (≤10%)", 1), ("pins right", 2)]
    for label, i in rows:
        line = f"{label:26}"
        for s in results:
            for r in ("baseline", "new"):
                a, b = results[s][r][i]
                line += f"{f'{a}/{b} ' + pct(a, b):>16}"
        print(line)
    kinds = sorted({k for s in results for k in results[s]["new"][3]})
    print("\nper kind (right answer, incl. 'nowhere' for outside):")
    for k in kinds:
        line = f"  {k:24}"
        for s in results:
            for r in ("baseline", "new"):
                a, b = results[s][r][3].get(k, (0, 0))
                line += f"{(f'{a}/{b} ' + pct(a, b)) if b else '':>16}"
        print(line)
    texts = [t for s in splits.values() for t, _, _ in s[1]]
    print(f"\nlatency per address ({len(texts)} addresses × {3 if args.quick else 20} rounds, caches cleared, "
          "both routers interleaved):")
    for split in splits:
        lat = latency(routers[split], [t for t, _, _ in splits[split][1]], 3 if args.quick else 20)
        b, n = lat["baseline"], lat["new"]
        print(f"  {split:5} wall p50/p99  baseline {b[0]:.3f}/{b[1]:.3f} ms   new {n[0]:.3f}/{n[1]:.3f} ms   "
              f"p99 ratio {n[1] / b[1]:.2f}")
        print(f"  {split:5} cpu  p50/p99  baseline {b[2]:.3f}/{b[3]:.3f} ms   new {n[2]:.3f}/{n[3]:.3f} ms   "
              f"p99 ratio {n[3] / b[3]:.2f}")
        print(f"  {split:5} best p50/p99  baseline {b[4]:.3f}/{b[5]:.3f} ms   new {n[4]:.3f}/{n[5]:.3f} ms   "
              f"p99 ratio {n[5] / b[5]:.2f}   (each address's best wall time of the rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
