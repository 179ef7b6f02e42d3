"""``memlib-evidence``: what the evidence store holds, what the chapters still need, and adding to it.

``memlib-evidence status [--json]``
    Per claim: the chapter that decides it, its verdict and the n the committed chapter used, and the n its
    plan asks for. Per chapter: encoders stored, encoders its design still needs at the preset, and the CPU
    time they would take.
``memlib-evidence add --chapter 01 [--budget 45m] [--workers N] [--device cuda]``
    Train the encoders the chapter's design lacks, run by run (each run appended as one batch, so an
    interrupted ``add`` resumes where it stopped: finished runs are in the store, unfinished training in the
    cache's checkpoints), within the budget.
``memlib-evidence verify``
    Schema, checksums and provenance of every row; exit status 1 with the offending files and rows named.

The cache (``memlib-cache``) holds weights; the store holds results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from ..evidence import open_store
from .glance import glued_values
from .presets import PRESETS
from .registry import experiments, get_experiment


def _parse_budget(text: str | None) -> float | None:
    """Minutes in ``"45m"``, ``"2h"``, ``"1h30m"`` or a plain number of minutes."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m?)?\s*", text)
    if not m or not any(m.groups()):
        raise SystemExit(f"memlib-evidence: --budget {text!r} is not a duration; write e.g. 45m, 2h or 1h30m")
    return float(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def _book(root: Path | None) -> Path:
    from .notebooks import repo_root

    return (root or repo_root()) / "book"


def claim_status(book: Path) -> list[dict]:
    """Each claim of the catalogue with its chapter, the committed chapter's verdict and n, and the planned n."""
    from .scoreboard import load_claims

    claims = load_claims(book / "_data" / "claims.yml")
    glued: dict[str, dict] = {}
    out = []
    for c in claims:
        ch = c.get("chapter")
        nb = next((book / "chapters").glob(f"{ch}_*.ipynb"), None) if ch else None
        if nb is not None and nb.name not in glued:
            glued[nb.name] = glued_values(nb)
        g = glued.get(nb.name, {}) if nb is not None else {}
        test = g.get(f"claim_{c['id']}_test", "")
        n = re.search(r"n = (\d+)", test or "")
        planned = g.get(f"claim_{c['id']}_planned_n")
        out.append(
            {
                "id": c["id"],
                "chapter": ch,
                "verdict": g.get(f"claim_{c['id']}_status", "not attempted" if not ch else "not decided"),
                "n": int(n.group(1)) if n else None,
                "planned_n": int(planned) if planned and str(planned).isdigit() else None,
                "test": test,
            }
        )
    return out


def chapter_status(store, preset: str, workers: int) -> list[dict]:
    """Per registered chapter: encoders its design needs at ``preset``, how many the store holds, and the
    CPU minutes the missing ones would take on ``workers`` workers."""
    held = set(store.load("encoders")["encoder"])
    rows = []
    for exp in experiments().values():
        cfg = exp.config(preset)
        designs, unbound = exp.design(cfg), 0
        if exp.bind is not None:  # designs that depend on other rows list every encoder once those are stored
            bound = []
            for d in designs:
                try:
                    bound.append(exp.bind(d, store))
                except LookupError:
                    bound.append(d)
                    unbound += 1
            designs = bound
        keys = list(dict.fromkeys(k for d in designs for k in d.keys()))
        trained = {k for d in designs for k in d.trained_keys()}
        lack = [k for k in keys if k not in held and k in trained]
        rows.append(
            {
                "chapter": exp.chapter,
                "experiment": exp.name,
                "preset": preset,
                "designs": len(designs),
                "encoders_needed": len(keys),
                "encoders_stored": sum(k in held for k in keys),
                "trainings_missing": len(lack),
                "cpu_minutes_missing": round(len(lack) * exp.minutes_per_encoder / max(workers, 1), 1),
                "designs_unbound": unbound,
            }
        )
    return rows


def _status(args) -> int:
    store = open_store(args.store, args.preset)
    claims = claim_status(_book(args.root))
    chapters = chapter_status(store, args.preset, args.workers or 2)
    if args.json:
        json.dump({"store": str(store.path), "claims": claims, "chapters": chapters}, sys.stdout, indent=1)
        print()
        return 0
    print(f"evidence store {store.path}: {store.size_bytes() / 1e6:.2f} MB")
    print(f"\n{'claim':6} {'ch':3} {'n':>4} {'plan':>5}  verdict")
    for c in claims:
        n = "" if c["n"] is None else c["n"]
        plan = "—" if c["planned_n"] is None else c["planned_n"]
        print(f"{c['id']:6} {c['chapter'] or '—':3} {n!s:>4} {plan!s:>5}  {c['verdict']}")
    print(f"\nchapters at preset {args.preset} (registered experiments):")
    for r in chapters:
        print(
            f"  {r['chapter']} {r['experiment']}: {r['encoders_stored']} of {r['encoders_needed']} encoders stored; "
            f"{r['trainings_missing']} to train, about {r['cpu_minutes_missing']} min on {args.workers or 2} workers"
            + (f" (and encoders of {r['designs_unbound']} designs whose inputs are not stored yet)"
               if r["designs_unbound"] else "")
        )  # fmt: skip
    registered = {r["chapter"] for r in chapters}
    others = sorted({c["chapter"] for c in claims if c["chapter"] and c["chapter"] not in registered})
    if others:
        print(f"  not registered yet (no plan, nothing stored): chapters {', '.join(others)}")
    return 0


def _add(args) -> int:
    exp = get_experiment(args.chapter)
    store = open_store(args.store, args.preset)
    budget = _parse_budget(args.budget)
    if args.workers:
        os.environ["MEMLIB_WORKERS"] = str(args.workers)
    cfg = exp.config(args.preset, seed=args.seed)
    held = set(store.load("encoders")["encoder"])
    designs = exp.design(cfg)
    workers = args.workers or 2
    todo = [d for d in designs if (exp.missing(store, d) if exp.missing else any(k not in held for k in d.keys()))]
    est = {d.name: sum(k not in held for k in d.keys()) * exp.minutes_per_encoder / workers for d in todo}
    print(f"chapter {exp.chapter} ({exp.name}) at {args.preset}: {len(todo)} of {len(designs)} runs lack rows")
    t0, spent = time.perf_counter(), 0.0
    for d in todo:
        if budget is not None and spent + est[d.name] > budget:
            print(f"  stop: {d.name} would take about {est[d.name]:.0f} min, past the budget ({budget:.0f} min)")
            break
        print(f"  {d.name}: about {est[d.name]:.0f} min")
        # One run at a time: each lands in the store as one batch, so an interrupted add loses at most one run.
        exp.fill(d, store=store, device=args.device, progress=True)
        spent = (time.perf_counter() - t0) / 60
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min; run `memlib-evidence status` for what is left")
    return 0


def _verify(args) -> int:
    store = open_store(args.store, args.preset)
    problems = store.verify()
    if problems:
        print(f"memlib-evidence verify: {len(problems)} problem(s) in {store.path}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    n = {t: len(store.load(t)) for t in ("encoders", "alignments", "probes", "history")}
    print(
        f"{store.path}: sound ({', '.join(f'{k} {v:,}' for k, v in n.items())} rows; {store.size_bytes() / 1e6:.2f} MB)"
    )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="memlib-evidence",
        description="The evidence store: per-encoder results every chapter analyses from (the cache, memlib-cache, "
        "holds weights; the store holds results).",
    )
    ap.add_argument("--store", type=Path, default=None, help="store folder (default: $MEMLIB_RESULTS, else results/)")
    ap.add_argument("--root", type=Path, default=None, help="the memlib repository (default: found from the CWD)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("status", help="claims with their n and verdict; what each chapter still needs")
    st.add_argument("--json", action="store_true")
    st.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    st.add_argument("--workers", type=int, default=None)
    ad = sub.add_parser("add", help="train and append what a chapter's design lacks")
    ad.add_argument("--chapter", required=True, help="chapter number or experiment name, e.g. 01 or sslmem")
    ad.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--budget", default=None, help="stop before a run that would pass it, e.g. 45m or 2h")
    ad.add_argument("--workers", type=int, default=None, help="CPU training workers (one thread each)")
    ad.add_argument("--device", default="cpu", help="cpu, cuda or auto: a GPU adds rows with its own provenance")
    ve = sub.add_parser("verify", help="check schema, checksums and provenance of every row")
    ve.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    args = ap.parse_args(argv)
    try:
        return {"status": _status, "add": _add, "verify": _verify}[args.cmd](args)
    except (KeyError, ValueError, LookupError) as e:
        print(f"memlib-evidence: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
