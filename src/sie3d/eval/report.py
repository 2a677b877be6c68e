"""The report of `sie3d eval`, made from its raw files alone: `rows.csv`/`rows.json` (one row per judged
image), `aggregate.json` and `summary.md` (accuracy and identity with bootstrap intervals, next to the
judges' references on real photos), `accuracy.png` and `identity.png`. `write_report(out)` rebuilds all of
them from `rows.json` and `references.json`, so every figure can be re-derived without re-running the judges.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sie3d.eval.references import References, confusion_markdown
from sie3d.eval.stats import Interval, bootstrap_mean
from sie3d.expressions import EMOTIONS

PHOTO_VIEW = "photo"  # the avatar composited into the photo (yaw 0, the photo's own camera and lighting)
PROBABILITY_COLUMNS = tuple(f"p_{e}" for e in EMOTIONS)
ROW_COLUMNS = ("photo", "person", "ablation", "intensity", "series", "prompt", "emotion", "expected", "view",
               "facex_top1", "facex_p_top1", "facex_p_expected", "facex_correct", *PROBABILITY_COLUMNS,
               "identity_facenet", "identity_facenet_delta", "identity_facenet_other_max", "identity_rank1",
               "identity_sface", "image", "seconds_render", "seconds_judge")


def write_rows(out: Path, rows: list[dict], photos: list[dict], meta: dict) -> list[Path]:
    """rows.csv (one line per judged image) and rows.json ({meta, photos, rows})."""
    with open(out / "rows.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=ROW_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in ROW_COLUMNS})
    (out / "rows.json").write_text(json.dumps({"meta": meta, "photos": photos, "rows": rows}, indent=None))
    return [out / "rows.csv", out / "rows.json"]


# -- aggregation -------------------------------------------------------------------------------------


def _series_order(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["series"] for r in rows))


def _emotional_series(rows: list[dict]) -> set[str]:
    """Series whose image changes with the target for some photo and view (not 'photo' or 'rest')."""
    images: dict[tuple, set] = {}
    for r in rows:
        images.setdefault((r["series"], r["photo"], r["view"]), set()).add(r["image"])
    return {key[0] for key, found in images.items() if len(found) > 1}


def distinct_images(rows: list[dict]) -> list[dict]:
    """One row per (photo, image): identity is a property of the image, so the 'photo' and 'rest' avatars,
    repeated for every target, count once per photo."""
    return list({(r["photo"], r["image"]): r for r in rows}.values())


def _interval(rows: list[dict], key: str, seed: int) -> Interval:
    values = [np.nan if r[key] is None else float(r[key]) for r in rows]
    return bootstrap_mean(values, [r["photo"] for r in rows], seed=seed)


def aggregate(rows: list[dict], seed: int = 0) -> dict:
    """Accuracy per expected emotion, identity and identity change per series x view, with bootstrap
    intervals over photos (clusters). Keys: accuracy[view][series][emotion|'all'], identity[...][series][view]."""
    views = list(dict.fromkeys(r["view"] for r in rows))
    series = _series_order(rows)
    expected = [e for e in EMOTIONS if any(r["expected"] == e for r in rows)]
    by = {}
    for r in rows:
        by.setdefault((r["series"], r["view"]), []).append(r)
    emotional = _emotional_series(rows)
    result = {"views": views, "series": series, "expected": expected,
              "accuracy": {}, "confusion": {}, "identity_facenet": {}, "identity_sface": {}, "identity_delta": {},
              "above_threshold": {}, "rank1": {}, "delta_by_emotion": {}}  # fmt: skip
    for view in views:
        result["accuracy"][view], result["confusion"][view] = {}, {}
        for s in series:
            chosen = by.get((s, view), [])
            accuracy = {e: _interval([r for r in chosen if r["expected"] == e], "facex_correct", seed)
                        for e in expected}
            accuracy["all"] = _interval(chosen, "facex_correct", seed)
            result["accuracy"][view][s] = {k: v.to_json() for k, v in accuracy.items()}
            matrix = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
            for r in chosen:
                matrix[EMOTIONS.index(r["expected"]), EMOTIONS.index(r["facex_top1"])] += 1
            result["confusion"][view][s] = matrix.tolist()
    for s in series:
        for name, key in (("identity_facenet", "identity_facenet"), ("identity_sface", "identity_sface"),
                          ("rank1", "identity_rank1")):  # fmt: skip
            result[name][s] = {v: _interval(distinct_images(by.get((s, v), [])), key, seed).to_json() for v in views}
        # Identity change from the neutral avatar: expressive renders only (not the neutral target, not the
        # photo's own expression, not the rest avatar itself).
        deltas = {v: [r for r in by.get((s, v), []) if r["emotion"] != "neutral"] for v in views}
        if s in emotional:
            result["identity_delta"][s] = {v: _interval(deltas[v], "identity_facenet_delta", seed).to_json()
                                           for v in views}  # fmt: skip
            result["delta_by_emotion"][s] = {v: {e: _interval([r for r in deltas[v] if r["emotion"] == e],
                                                              "identity_facenet_delta", seed).to_json()
                                                 for e in expected if e != "neutral"} for v in views}  # fmt: skip
    return result


def _threshold_share(rows: list[dict], threshold: float, seed: int) -> Interval:
    values = [float(r["identity_facenet"] >= threshold) for r in rows]
    return bootstrap_mean(values, [r["photo"] for r in rows], seed=seed)


def _fmt(data: dict | None, digits: int = 2, n: bool = True) -> str:
    if not data or not data.get("n"):
        return "–"
    return Interval(data["mean"], data["low"], data["high"], data["n"], data["clusters"]).format(digits, n)


def summary_markdown(rows: list[dict], meta: dict, references: References | None, seed: int = 0) -> tuple[str, dict]:
    """The aggregate report (Markdown) and the aggregate numbers it shows."""
    agg = aggregate(rows, seed)
    views, series, expected = agg["views"], agg["series"], agg["expected"]
    frontal = "0" if "0" in views else views[0]
    facenet_ref = references.identity_judge("facenet") if references else None
    threshold = facenet_ref.threshold if facenet_ref is not None else None
    lines = ["# sie3d evaluation", "",
             f"`{meta.get('command') or 'sie3d eval'}` — sie3d {meta.get('sie3d_version')}, {meta.get('date')}, "
             f"{meta.get('evaluated')} of {meta.get('photos')} photos, {len(rows)} judged rows "
             f"({meta.get('images_judged')} distinct images), wall time {meta.get('wall_seconds')} s on "
             f"{meta.get('cpu_count')} cores (torch threads {meta.get('torch_threads')}).", "",
             "Judges: facex (expression, top-1 of 7) and FaceNet (identity, cosine to the source photo) are "
             "held out: nothing in generation uses them. SFace figures are for information only. Intervals: "
             "95% percentile bootstrap over photos (every render of one photo resampled together); n = rows.",
             "", f"Views: yaw {', '.join(v for v in views if v != PHOTO_VIEW)}° on a plain background"
             + ("; `photo` = the avatar composited into the source photo (its camera and lighting)"
                if PHOTO_VIEW in views else "") + ".", ""]  # fmt: skip
    if meta.get("skipped"):
        lines += [f"Skipped (no face found): {', '.join(meta['skipped'])}.", ""]
    if references is not None:
        lines += ["## Real-photo references", "", references.markdown(seed), ""]
    for view in [frontal, *([PHOTO_VIEW] if PHOTO_VIEW in views and frontal != PHOTO_VIEW else [])]:
        title = "frontal render (yaw 0)" if view == "0" else "in-photo composite" if view == PHOTO_VIEW else view
        lines += [f"## Expression accuracy — {title}", "",
                  "facex top-1 = expected emotion; mean [95% interval] n.", "",
                  "| expected | " + " | ".join(series) + " |", "|---|" + "---|" * len(series)]  # fmt: skip
        for e in [*expected, "all"]:
            label = "**all**" if e == "all" else e
            lines.append(f"| {label} | " + " | ".join(_fmt(agg["accuracy"][view][s].get(e)) for s in series) + " |")
        lines.append("")
    lines += ["## Expression accuracy by view (all expected emotions)", "",
              "| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]
    lines += [f"| {s} | " + " | ".join(_fmt(agg["accuracy"][v][s]["all"]) for v in views) + " |" for s in series]
    emotional = [s for s in series if s in agg["identity_delta"]]
    for s in emotional:
        lines += ["", f"What facex reads on the frontal renders of **{s}** (rows: expected, columns: top-1):", "",
                  confusion_markdown(np.asarray(agg["confusion"][frontal][s]))]
    lines += ["", "## Identity (FaceNet cosine to the source photo)", ""]
    if facenet_ref is not None:
        lines += [f"Real photos: same person {facenet_ref.same.mean():.3f} (n={len(facenet_ref.same)}), different "
                  f"people {facenet_ref.different.mean():.3f} (n={len(facenet_ref.different)}), threshold at 1% "
                  f"false accepts {threshold:.3f}.", ""]  # fmt: skip
    lines += ["| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]
    lines += [f"| {s} | " + " | ".join(_fmt(agg["identity_facenet"][s][v], 3) for v in views) + " |" for s in series]
    by = {}
    for r in rows:
        by.setdefault((r["series"], r["view"]), []).append(r)
    if threshold is not None:
        lines += ["", f"Share of renders at or above the real-photo threshold ({threshold:.3f}), i.e. accepted as "
                  "the same person at 1% false accepts:", "",
                  "| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]  # fmt: skip
        shares = {s: {v: _threshold_share(distinct_images(by.get((s, v), [])), threshold, seed).to_json()
                      for v in views} for s in series}  # fmt: skip
        agg["above_threshold"] = shares
        lines += [f"| {s} | " + " | ".join(_fmt(shares[s][v], 2, False) for v in views) + " |" for s in series]
    if any(r["identity_rank1"] is not None for r in rows):
        lines += ["", "Rank-1 identification: the source photo is the closest (FaceNet) of all evaluated people's "
                  "photos:", "", "| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]
        lines += [f"| {s} | " + " | ".join(_fmt(agg["rank1"][s][v], 2, False) for v in views) + " |" for s in series]
    if emotional:
        lines += ["", "## Expression transfer without identity loss", "",
                  "FaceNet identity of each expressive render minus that of the same person's neutral (rest) render "
                  "in the same view; the goal is ≥ −0.05.", "",
                  "| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]  # fmt: skip
        lines += [f"| {s} | " + " | ".join(_fmt(agg["identity_delta"][s][v], 3) for v in views) + " |"
                  for s in emotional]  # fmt: skip
        lines += ["", f"By emotion, {'frontal render' if frontal == '0' else frontal}:", "",
                  "| series | " + " | ".join(e for e in expected if e != "neutral") + " |",
                  "|---|" + "---|" * len([e for e in expected if e != "neutral"])]  # fmt: skip
        lines += [f"| {s} | " + " | ".join(_fmt(agg["delta_by_emotion"][s][frontal].get(e), 3, False)
                                           for e in expected if e != "neutral") + " |" for s in emotional]  # fmt: skip
    lines += ["", "SFace cosine (for information; SFace is not held out):", "",
              "| series | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]
    lines += [f"| {s} | " + " | ".join(_fmt(agg["identity_sface"][s][v], 3, False) for v in views) + " |"
              for s in series]  # fmt: skip
    return "\n".join(lines) + "\n", agg


def _timing_markdown(photos: list[dict], meta: dict) -> str:
    if not photos:
        return ""
    rec = np.array([p["seconds_reconstruct"] for p in photos])
    render = np.array([p["seconds_render"] for p in photos])
    judge = np.array([p["seconds_judge"] for p in photos])
    images = sum(p["images_rendered"] for p in photos)
    return "\n".join([
        "## Time", "",
        f"Wall time {meta.get('wall_seconds')} s for {meta.get('evaluated')} photos (model loading and references "
        f"included). Per photo, median: reconstruction (texture {meta.get('texture_size')}) {np.median(rec):.2f} s, "
        f"rendering {np.median(render):.2f} s, judges {np.median(judge):.2f} s; {images} distinct images rendered "
        f"({render.sum() / max(images, 1) * 1000:.0f} ms each, {meta.get('render_size')} px; in-photo composites "
        "included) and judged in batches.", ""])  # fmt: skip


def write_report(out: Path) -> list[Path]:
    """summary.md, aggregate.json, accuracy.png and identity.png from `out`/rows.json (+ references.json)."""
    data = json.loads((out / "rows.json").read_text())
    rows, meta = data["rows"], data["meta"]
    references = None
    if (out / "references.json").is_file():
        references = References.from_json(json.loads((out / "references.json").read_text()))
    seed = int(meta.get("seed", 0))
    text, agg = summary_markdown(rows, meta, references, seed)
    text += "\n" + _timing_markdown(data.get("photos", []), meta)
    text += ("\nFiles: `rows.csv`/`rows.json` (one row per judged image), `references.json`, `aggregate.json`, "
             "`accuracy.png`, `identity.png`, `contact/`.\n")  # fmt: skip
    (out / "summary.md").write_text(text)
    (out / "aggregate.json").write_text(json.dumps(agg, indent=1))
    files = [out / "summary.md", out / "aggregate.json"]
    files += plot_accuracy(out / "accuracy.png", agg, references)
    files += plot_identity(out / "identity.png", rows, references)
    return files


def digest(out: Path) -> str:
    """A few lines for the terminal from `out`/aggregate.json: per series, accuracy over all targets and
    FaceNet identity, frontal and in the photo."""
    agg = json.loads((out / "aggregate.json").read_text())
    views = [v for v in ("0", PHOTO_VIEW) if v in agg["views"]] or agg["views"][:1]
    lines = [f"{'series':16s} " + " ".join(f"{'accuracy ' + v:>24s} {'identity ' + v:>24s}" for v in views)]
    for s in agg["series"]:
        cells = [f"{_fmt(agg['accuracy'][v][s]['all'], 2, False):>24s} "
                 f"{_fmt(agg['identity_facenet'][s][v], 3, False):>24s}" for v in views]  # fmt: skip
        lines.append(f"{s:16s} " + " ".join(cells))
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot, no global backend: safe inside any program
    return fig


def plot_accuracy(path: Path, agg: dict, references: References | None) -> list[Path]:
    """Bars: facex accuracy per expected emotion per series (frontal render, and the in-photo composite),
    with bootstrap intervals; diamonds: facex's accuracy on real photos of that label, where there are any."""
    views = [v for v in ("0", PHOTO_VIEW) if v in agg["views"]] or agg["views"][:1]
    series, expected = agg["series"], agg["expected"]
    ref = references.expression_judge("facex") if references else None
    real = {}
    if ref is not None:
        for e in expected:
            hits = [p["top1"] == e for p in ref.photos if p["label"] == e]
            if hits:
                real[e] = (float(np.mean(hits)), len(hits))
    fig = _figure(max(7.0, 1.1 * len(expected) + 2), 3.2 * len(views))
    axes = fig.subplots(len(views), 1, squeeze=False)[:, 0]
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(expected))
    for ax, view in zip(axes, views, strict=True):
        for k, s in enumerate(series):
            stats = [agg["accuracy"][view][s][e] for e in expected]
            means = np.array([np.nan if st["mean"] is None else st["mean"] for st in stats])
            low = np.array([np.nan if st["low"] is None else st["low"] for st in stats])
            high = np.array([np.nan if st["high"] is None else st["high"] for st in stats])
            ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(means), width, label=s,
                   yerr=np.nan_to_num(np.stack([means - low, high - means])), capsize=2, error_kw={"lw": 0.8})
        if real:
            idx = [expected.index(e) for e in real]
            ax.scatter(idx, [real[e][0] for e in real], marker="D", color="black", zorder=5, s=22,
                       label="facex on real photos (n)")  # fmt: skip
            for i, e in zip(idx, real, strict=True):
                ax.annotate(f"n={real[e][1]}", (i, real[e][0]), textcoords="offset points", xytext=(6, 3), fontsize=7)
        ax.set_xticks(x, expected)
        ax.set_ylim(0, 1.25)
        ax.set_ylabel("facex top-1 accuracy")
        ax.set_title("frontal render (yaw 0)" if view == "0" else "avatar composited into the photo"
                     if view == PHOTO_VIEW else f"view {view}", fontsize=10)  # fmt: skip
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=min(6, len(series) + 1), loc="upper center")
    fig.savefig(path)
    return [path]


def plot_identity(path: Path, rows: list[dict], references: References | None) -> list[Path]:
    """Box plots of FaceNet cosine to the source photo per series and view, beside the real-photo
    same-person and different-people distributions and the 1%-false-accept threshold."""
    views = list(dict.fromkeys(r["view"] for r in rows))
    series = _series_order(rows)
    groups, labels, colours = [], [], []
    ref = references.identity_judge("facenet") if references else None
    if ref is not None:
        groups += [ref.same, ref.different]
        labels += ["real: same person", "real: different people"]
        colours += ["#4c72b0", "#c44e52"]
    palette = ["#55a868", "#8172b2", "#ccb974", "#64b5cd", "#dd8452", "#937860"]
    for k, view in enumerate(views):
        for s in series:
            chosen = distinct_images([r for r in rows if r["series"] == s and r["view"] == view])
            values = [r["identity_facenet"] for r in chosen]
            groups.append(np.asarray(values, np.float64))
            labels.append(f"{s} · {view}")
            colours.append(palette[k % len(palette)])
    fig = _figure(max(7.0, 0.42 * len(groups) + 2), 4.6)
    ax = fig.subplots()
    parts = ax.boxplot(groups, patch_artist=True, widths=0.6, showfliers=True, flierprops={"markersize": 2})
    for patch, colour in zip(parts["boxes"], colours, strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.6)
    if ref is not None:
        ax.axhline(ref.threshold, color="black", ls="--", lw=0.8, label=f"1% false accepts ({ref.threshold:.2f})")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("FaceNet cosine to the source photo")
    ax.set_title("Identity: avatar renders (series · view) against real-photo references", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)
    return [path]


# -- contact sheets ----------------------------------------------------------------------------------
