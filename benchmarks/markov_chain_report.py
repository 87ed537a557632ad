"""The Markov-chain study's bookkeeping: one JSON file per finished unit, and the summary
(mean ± std over seeds) regenerated from them as results.json and tables.md.

A unit is anything expensive (training one model, scoring one sampler on one model, ...). Its
result is written atomically to ``<out>/units/<key>.json`` when it finishes; a unit whose file
exists is never run again, so a killed or budget-stopped study resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from vaekit.files import write_json

Row = dict[str, Any]
SCORED = ("samples", "interpolation", "imputation")  # unit kinds scored with the extractor


class Units:
    """Finished units under ``<out>/units``: ``get``, ``put`` and ``run`` (skip if present)."""

    def __init__(self, out: Path):
        self.root = out / "units"
        self.skipped = 0  # units found finished by this process
        self.ran = 0

    def path(self, key: str) -> Path:
        """Where unit ``key`` ("train/vae-mlp-s0", "samples/vae-mlp-s0/prior", ...) lives."""
        return self.root / f"{key}.json"

    def get(self, key: str) -> Row | None:
        """The finished unit ``key``, or None."""
        path = self.path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, value: Row) -> None:
        """Record unit ``key`` as finished (atomic: complete or absent)."""
        self.path(key).parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path(key), value)

    def run(
        self, key: str, compute: Callable[[], Row], *, before: Callable[[], None] | None = None
    ) -> Row:
        """The unit's result: read back if finished, else ``before()`` (which may raise to
        stop), ``compute()``, and recorded with its wall time as ``seconds`` (unless given)."""
        done = self.get(key)
        if done is not None:
            self.skipped += 1
            return done
        if before is not None:
            before()
        started = time.perf_counter()
        value = compute()
        value.setdefault("seconds", round(time.perf_counter() - started, 1))
        self.put(key, value)
        self.ran += 1
        return value

    def finished(self) -> dict[str, Row]:
        """Every finished unit by key."""
        if not self.root.is_dir():
            return {}
        files = sorted(self.root.rglob("*.json"))
        return {
            str(p.relative_to(self.root).with_suffix("")): json.loads(p.read_text()) for p in files
        }


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def aggregate(rows: Iterable[Row], by: Sequence[str], metrics: Sequence[str]) -> list[Row]:
    """One row per distinct value of the ``by`` fields (in first-seen order), with ``seeds``
    (rows pooled) and, per metric, ``<metric>`` = mean and ``<metric>_std`` = sample std over
    the rows that have a number for it (None where none has)."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        summary: Row = dict(zip(by, key, strict=True))
        summary["seeds"] = len(members)
        for metric in metrics:
            values = [r[metric] for r in members if isinstance(r.get(metric), int | float)]
            mean, std = mean_std(values) if values else (None, None)
            summary[metric], summary[f"{metric}_std"] = mean, std
        out.append(summary)
    return out


def cell(row: Row, metric: str, digits: int, scale: float = 1.0) -> str:
    """ "mean ± std" (or the mean alone for one seed, "–" for none) of an aggregated metric."""
    mean, std = row.get(metric), row.get(f"{metric}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return text if std is None else f"{text} ± {scale * std:.{digits}f}"


Column = tuple[str, str, int, float]  # header, metric, digits, scale


def markdown(
    rows: Sequence[Row], labels: Sequence[tuple[str, str]], columns: Sequence[Column]
) -> str:
    """A markdown table: label columns (header, field), ``seeds``, then metric cells."""
    header = [h for h, _ in labels] + ["seeds"] + [c[0] for c in columns]
    align = ["---"] * len(labels) + ["---:"] * (1 + len(columns))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [str(row[field]) for _, field in labels] + [str(row["seeds"])]
        cells += [cell(row, metric, digits, scale) for _, metric, digits, scale in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


KIND_LABELS = {"vae": "VAE", "dvae": "DVAE", "aae": "AAE", "daae": "DAAE"}
SAMPLE_COLUMNS: list[Column] = [
    ("FID", "fid", 1, 1.0),
    ("KID", "kid", 1, 1.0),
    ("precision", "precision", 3, 1.0),
    ("recall", "recall", 3, 1.0),
    ("MMD² to q(z) ×10³", "mmd2", 2, 1e3),
    ("share conf. > 0.9", "confident", 3, 1.0),
    ("class TV", "class_tv", 3, 1.0),
    ("E‖z‖²/D", "latent_power", 2, 1.0),
]
IMPUTATION_COLUMNS: list[Column] = [
    ("accuracy", "accuracy", 3, 1.0),
    ("MSE missing", "mse", 4, 1.0),
    ("acceptance", "acceptance", 3, 1.0),
]


def model_label(spec: Any) -> str:
    """ "VAE", "DAAE (conv)", ... for a ModelSpec."""
    name = KIND_LABELS.get(spec.kind, spec.kind.upper())
    return name if spec.network == "mlp" else f"{name} ({spec.network})"


def _labelled(unit: Row | None, spec: Any, **extra: Any) -> list[Row]:
    rows = [] if unit is None else unit.get("rows", [])
    return [{**row, "model": model_label(spec), "seed": spec.seed, **extra} for row in rows]


def summarise(finished: dict[str, Row], models: Sequence[Any], args: Any) -> Row:
    """results.json's summary (aggregated tables, per-unit timings) and ``markdown``, the
    tables.md text, from the finished units; rows list how many seeds they pool."""
    tables: dict[str, list[Row]] = {}
    reference = finished.get("reference/extractor", {})
    num_classes = len(reference.get("test_class_share", [])) or 10
    samplers = [name for name in dict.fromkeys(_sampler_names(finished))]

    trained = [
        {"model": model_label(s), **finished[f"train/{s.id}"]}
        for s in models
        if f"train/{s.id}" in finished
    ]
    for row in trained:
        row["minutes"] = row["seconds"] / 60
        row["converged"] = float(row["converged"])
    tables["training"] = aggregate(
        trained, ["model"], ["epochs", "converged", "minutes", "final_val_objective"]
    )

    sample_rows: list[Row] = []
    for spec in models:
        for name in samplers:
            unit = finished.get(f"samples/{spec.id}/{name}")
            sample_rows += _labelled(unit, spec, label=name)
        for key in sorted(k for k in finished if k.startswith(f"samples/{spec.id}/chain-")):
            sample_rows += [
                {**row, "label": f"chain step {row['step']}"}
                for row in _labelled(finished[key], spec)
            ]
    metrics = [c[1] for c in SAMPLE_COLUMNS] + [f"class_{c}" for c in range(num_classes)]
    order = {name: i for i, name in enumerate(samplers)}

    def sample_order(row: Row) -> tuple[int, int, int]:
        position = (1, row["step"]) if row["sampler"] == "chain" else (2 * order[row["sampler"]], 0)
        return (_model_index(models, row), *position)

    for start in ("prior", "wide"):
        for decode in ("mean", "sample"):
            chosen = [
                r for r in sample_rows
                if r["sampler"] != "chain" or (r["start"], r["decode"]) == (start, decode)
            ]  # fmt: skip
            chosen.sort(key=sample_order)
            tables[f"samples-{start}-{decode}"] = aggregate(chosen, ["model", "label"], metrics)
    tables["fid-by-step"], tables["fid-baselines"] = fid_summary(sample_rows, models, samplers)

    path_rows: list[Row] = []
    impute_rows: list[Row] = []
    not_applicable: dict[str, str] = {}
    for spec in models:
        path_rows += _labelled(finished.get(f"interpolation/{spec.id}"), spec)
        for key in sorted(k for k in finished if k.startswith(f"imputation/{spec.id}/")):
            impute_rows += _labelled(finished[key], spec)
            if "not_applicable" in finished[key]:
                not_applicable[model_label(spec)] = finished[key]["not_applicable"]
    confidence = [f"confidence_{i}" for i in range(args.num_points)]
    tables["interpolation"] = aggregate(
        path_rows, ["model", "path"], ["midpoint_fid", "midpoint_confident", *confidence]
    )
    impute_rows.sort(
        key=lambda r: (_model_index(models, r), r["mask"], r["method"] != "pseudo-gibbs", r["step"])
    )
    tables["imputation"] = aggregate(
        impute_rows, ["model", "mask", "method", "step"], [c[1] for c in IMPUTATION_COLUMNS]
    )
    timings = [{"unit": key, "seconds": row.get("seconds")} for key, row in finished.items()]
    extractors = dict(
        Counter(
            row.get("extractor", "not recorded")
            for key, row in finished.items()
            if key.split("/")[0] in SCORED
        )
    )
    return {
        "benchmark": "markov-chain-study",
        "reference": reference,
        "extractors": extractors,
        "tables": tables,
        "timings": timings,
        "markdown": _markdown(tables, args, num_classes, not_applicable, reference, extractors),
    }


def fid_summary(
    sample_rows: list[Row], models: Sequence[Any], samplers: Sequence[str]
) -> tuple[list[Row], list[Row]]:
    """FID at a glance: one row per model and chain setting with the FID at every recorded
    step (``fid_<step>``), and one row per model with each fitted sampler's FID
    (``fid_<sampler>``) beside the best chain cell (its mean, setting and step)."""
    chain = [r for r in sample_rows if r["sampler"] == "chain"]
    steps = sorted({r["step"] for r in chain})
    by_step = aggregate(
        sorted(chain, key=lambda r: (_model_index(models, r), r["start"], r["decode"])),
        ["model", "start", "decode", "step"],
        ["fid"],
    )
    along: dict[tuple[str, str, str], Row] = {}
    for row in by_step:
        key = (row["model"], row["start"], row["decode"])
        line = along.setdefault(key, {"model": key[0], "start": key[1], "decode": key[2]})
        line["seeds"] = min(line.get("seeds", row["seeds"]), row["seeds"])
        line[f"fid_{row['step']}"], line[f"fid_{row['step']}_std"] = row["fid"], row["fid_std"]
    baselines: list[Row] = []
    for label in dict.fromkeys(model_label(s) for s in models):
        fitted = [r for r in sample_rows if r["model"] == label and r["sampler"] != "chain"]
        if not fitted:
            continue
        line: Row = {"model": label, "seeds": len({r["seed"] for r in fitted})}
        for name in samplers:
            row = aggregate([r for r in fitted if r["sampler"] == name], ["model"], ["fid"])
            if row:
                line[f"fid_{name}"], line[f"fid_{name}_std"] = row[0]["fid"], row[0]["fid_std"]
        cells = [
            (line_[f"fid_{step}"], line_[f"fid_{step}_std"], key[1], key[2], step)
            for key, line_ in along.items()
            if key[0] == label
            for step in steps
            if step > 0 and line_.get(f"fid_{step}") is not None
        ]
        if cells:
            best = min(cells, key=lambda c: c[0])
            line["fid_best_chain"], line["fid_best_chain_std"] = best[0], best[1]
            line["best_chain"] = f"{best[2]}, {best[3]}, step {best[4]}"
        baselines.append(line)
    return list(along.values()), baselines


def _sampler_names(finished: dict[str, Row]) -> list[str]:
    """Non-chain samplers in the order their units were first found (prior first)."""
    names = [k.rsplit("/", 1)[1] for k in finished if k.startswith("samples/")]
    names = [n for n in names if not n.startswith("chain-")]
    return sorted(set(names), key=lambda n: (n != "prior", n))


def _model_index(models: Sequence[Any], row: Row) -> int:
    labels = list(dict.fromkeys(model_label(s) for s in models))
    return labels.index(row["model"])


def _baselines_markdown(rows: Sequence[Row]) -> str:
    """The fitted samplers' FID per model, then the best chain cell and where it is."""
    names = list(dict.fromkeys(k[4:] for r in rows for k in r if k.startswith("fid_")))
    names = [n for n in names if not n.endswith("_std") and n != "best_chain"]
    table = markdown(
        rows,
        [("model", "model")],
        [(n, f"fid_{n}", 1, 1.0) for n in names] + [("best chain", "fid_best_chain", 1, 1.0)],
    )
    lines = table.split("\n")
    lines[0] += " best chain at |"
    lines[1] += "---|"
    for i, row in enumerate(rows):
        lines[2 + i] += f" {row.get('best_chain', '–')} |"
    return "\n".join(lines)


def _markdown(
    tables: dict[str, list[Row]],
    args: Any,
    num_classes: int,
    not_applicable: dict[str, str],
    reference: Row,
    extractors: dict[str, int],
) -> str:
    """tables.md: every table with the sample counts it rests on."""
    extractor = reference.get("extractor", {})
    counts = ", ".join(f"`{name}` {n}" for name, n in extractors.items())
    parts = [
        "# Markov-chain study: tables",
        "",
        f"Generated by `python -m benchmarks.markov_chain_study` from the finished units; each "
        f"cell is the mean ± sample std over the `seeds` finished so far (one seed: the value "
        f"alone). Extractor `{extractor.get('hash', '?')}` (test accuracy "
        f"{extractor.get('test_accuracy', float('nan')):.4f}); real images: the "
        f"{reference.get('num_test', '?')} test images. Scored units by the extractor they "
        f"record: {counts or 'none yet'}.",
        "",
        "## Training",
        "",
        f"Stopped at the first epoch t with a relative change of the validation objective below "
        f"{args.tolerance:g} over {args.window} epochs, else at {args.max_epochs} epochs. "
        "`converged` is the share of seeds that met the rule; minutes are training wall time.",
        "",
        markdown(
            tables["training"],
            [("model", "model")],
            [
                ("epochs", "epochs", 1, 1.0),
                ("converged", "converged", 2, 1.0),
                ("minutes", "minutes", 1, 1.0),
                ("val objective (nats)", "final_val_objective", 2, 1.0),
            ],
        ),
        "",
        "## FID at a glance",
        "",
        "FID of the chain's samples at each step, per start (the prior N(0, I), or the wide "
        "N(0, 2² I)) and decoding inside the chain (mean or sample); step 0 is the start itself "
        "(from the prior: plain prior sampling). Lower is better.",
        "",
        markdown(
            tables["fid-by-step"],
            [("model", "model"), ("start", "start"), ("decode", "decode")],
            [(step, f"fid_{step}", 1, 1.0) for step in args.steps.split(",")],
        ),
        "",
        "The fitted samplers beside the best chain cell of each model (the lowest mean FID "
        "over starts, decodings and steps 1 and later).",
        "",
        _baselines_markdown(tables["fid-baselines"]),
    ]
    for start in ("prior", "wide"):
        for decode in ("mean", "sample"):
            source = "N(0, I)" if start == "prior" else "N(0, 2² I)"
            parts += [
                "",
                f"## Samples: chain from {start} {source}, {decode} decoding inside the chain",
                "",
                f"{args.num_samples} samples per seed (decoder means), against the test images; "
                f"MMD² on {args.mmd_points} latents against as many codes z ~ q(z|x) of training "
                "images. The prior and fitted-density rows are the same in all four tables.",
                "",
                markdown(
                    tables[f"samples-{start}-{decode}"],
                    [("model", "model"), ("sampler", "label")],
                    SAMPLE_COLUMNS,
                ),
            ]
    parts += [
        "",
        "## Class histogram of the samples (%; chain from the prior, mean decoding)",
        "",
        "The extractor's predicted class of each sample; mode dropping shows as a class far "
        "below 10 %. `class TV` in the sample tables is the total variation distance from the "
        "test labels' shares.",
        "",
        markdown(
            tables["samples-prior-mean"],
            [("model", "model"), ("sampler", "label")],
            [(str(c), f"class_{c}", 1, 100.0) for c in range(num_classes)],
        ),
        "",
        "## Interpolation",
        "",
        f"{args.pairs} random pairs of test images per seed, {args.num_points} points per path "
        "(encoder means at the ends). Midpoint FID: the decoded midpoints against the test "
        "images; then the extractor's mean top-class probability at each position t.",
        "",
        markdown(
            tables["interpolation"],
            [("model", "model"), ("path", "path")],
            [
                ("midpoint FID", "midpoint_fid", 1, 1.0),
                ("midpoint conf. > 0.9", "midpoint_confident", 3, 1.0),
            ]
            + [
                (f"t={i / (args.num_points - 1):.2g}", f"confidence_{i}", 2, 1.0)
                for i in range(args.num_points)
            ],
        ),
        "",
        "## Imputation",
        "",
        f"The first {args.impute_images} test images per seed; the chain runs with sampled "
        "decoding and is scored on the decoder mean at its z in the missing pixels. Accuracy: "
        "the extractor's prediction on the completed image equals the true label. Acceptance: "
        "Metropolis-within-Gibbs acceptance rate up to that step.",
        "",
        markdown(
            tables["imputation"],
            [("model", "model"), ("mask", "mask"), ("method", "method"), ("step", "step")],
            IMPUTATION_COLUMNS,
        ),
    ]
    for model, reason in not_applicable.items():
        parts += ["", f"Not applicable for {model}: {reason}."]
    return "\n".join(parts) + "\n"
