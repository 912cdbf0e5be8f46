"""``list``, ``info`` and ``zoo``: the registry and complexity accounting."""

from __future__ import annotations

import argparse
import json
import sys

from ..complexity import Comparison, compare_published, profile
from ..models.factory import create_model
from ..registry import get_entry, list_models
from . import resolution_arg


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet_v3_*'")
    p.add_argument("--pretrained", action="store_true",
                   help="weights shipped with the package (NAME.TAG works where a model directory does)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="per-layer params and MAdds of a model, and the P-V1 Table 2 breakdown")
    p.add_argument("name", help="registered model name (see `mobilenets list`) or a model directory")
    p.add_argument("--resolution", "-r", type=resolution_arg, default=None,
                   help="input size: 224 or HxW such as 224x160 (default 224; a model directory's own)")  # fmt: skip
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: the model's (1000; detectors 91; segmenters 19; a model dir's own)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("zoo", help="every registered model beside its published params and MAdds (exit 1: mismatch)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern")
    p.add_argument("--json", action="store_true", help="print a JSON list (the summary line goes to stderr)")
    p.set_defaults(func=cmd_zoo)


def _list_pretrained(args) -> int:
    from fnmatch import fnmatch

    from ..pretrained import available

    shipped = {key: meta for key, meta in available().items() if fnmatch(key.partition(".")[0], args.pattern)}
    if not shipped:
        raise ValueError(f"no shipped weights match {args.pattern!r}; `mobilenets list --pretrained` shows all")
    if args.json:
        print(json.dumps([{"name": key, **meta} for key, meta in shipped.items()]))
        return 0
    width = max(map(len, shipped))
    for key, meta in shipped.items():
        score = f"top-1 {meta['top1']:.2f}% on {meta.get('trained_on', '?')} test" if "top1" in meta else ""
        print(f"{key:<{width}}  {score}, recipe {meta.get('recipe', '?')}, {meta.get('epoch', '?')} epochs")
    return 0


def cmd_list(args) -> int:
    if args.pretrained:
        return _list_pretrained(args)
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try `mobilenets list`")
    if args.json:
        print(json.dumps(names))
    else:
        width = max(map(len, names))
        for name in names:
            print(f"{name:<{width}}  {get_entry(name).description}")
    return 0


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _info_model(args):
    """A registered name, or a model directory (an adapted or fine-tuned one: its own widths and input)."""
    from pathlib import Path

    from ..io import is_model_dir, load_model, read_config

    if is_model_dir(args.name):
        if args.num_classes is not None:
            raise ValueError(f"--num-classes does not apply to a model directory ({args.name} has its own)")
        model = load_model(args.name)
        pre = model.preprocessing
        return model, args.resolution or ("x".join(map(str, pre.input_size)) if pre else "224")
    if Path(args.name).is_dir():
        if (Path(args.name) / "config.json").is_file():
            read_config(args.name)  # says what is wrong with its config.json
        raise ValueError(f"{args.name} is a directory but not a model directory (config.json + model.safetensors)")
    # The input the papers count a model at: ImageNet's 224, unless the model says (SSDLite: 320).
    model = create_model(args.name, num_classes=args.num_classes)
    return model, args.resolution or str(getattr(model, "paper_input_size", 224))


def cmd_info(args) -> int:
    model, resolution = _info_model(args)
    prof = profile(model, resolution)
    widths = _widths(model)
    if args.json:
        print(json.dumps({**prof.as_dict(), **({"widths": widths} if widths else {})}))
        return 0
    h, w = prof.resolution
    print(f"{prof.name} at {h}x{w}: {prof.params:,} params, {prof.madds:,} MAdds ({prof.madds / 1e6:.1f}M)")
    if widths:
        print(f"widths: stem {widths['stem']}; blocks (in/exp/out, se): {', '.join(widths['blocks'])}"
              + "".join(f"; {k} {widths[k]}" for k in ("final", "features") if widths.get(k)))  # fmt: skip
    print()
    header = f"{'layer':<28} {'type':<16} {'input':>14} {'output':>14} {'params':>10} {'MAdds':>12}"
    print(header)
    print("-" * len(header))
    for layer in prof.layers:
        shape_in = "x".join(map(str, layer.in_shape))
        shape_out = "x".join(map(str, layer.out_shape))
        params = layer.params + layer.bn_params
        print(f"{layer.name:<28} {layer.kind:<16} {shape_in:>14} {shape_out:>14} {params:>10,} {layer.madds:>12,}")
    print()
    print(f"{'type':<16} {'MAdds':>8} {'params':>8}   (P-V1 Table 2 style: params without BN)")
    for kind, (madds_pct, params_pct) in prof.breakdown(count_bn=False).items():
        print(f"{kind:<16} {madds_pct:>7.2f}% {params_pct:>7.2f}%")
    return 0


def _widths(model) -> dict | None:
    """Per-layer channel counts from the model's block specs (what NetAdapt or an edited spec list sets)."""
    from torch import nn

    blocks = getattr(model, "blocks", None)
    stem = getattr(getattr(model, "stem", None), "conv", None)
    if not blocks or stem is None:
        return None
    text = []
    for b in blocks:
        exp = f"/{b.exp_chs}" if b.exp_chs else ""
        text.append(f"{b.in_chs}{exp}/{b.out_chs}" + (f" se{b.se_chs}" if b.se_chs else ""))
    final = model.final_conv.conv.out_channels if not isinstance(model.final_conv, nn.Identity) else 0
    features = model.pre_logits[0].out_features if not isinstance(model.pre_logits, nn.Identity) else 0
    return {"stem": stem.out_channels, "blocks": text, "final": final, "features": features}


def _rel(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f}%"


def _status(comp: Comparison) -> str:
    checks = [ok for ok in (comp.params_ok, comp.madds_ok) if ok is not None]
    if not all(checks):
        return "MISMATCH"
    return "erratum" if comp.published.erratum else "ok"


def zoo_summary(rows: list[dict]) -> str:
    """What ``zoo`` checked: models, those with published figures, comparisons (one per source row), figures."""
    models = {r["model"] for r in rows}
    compared = [r for r in rows if "source" in r]
    figures = sum((r["checked_params"] is not None) + (r["checked_madds"] is not None) for r in compared)
    mismatches = sum(r["status"] == "MISMATCH" for r in compared)
    verdict = f"{mismatches} MISMATCHES" if mismatches else "all within tolerance"
    return (f"{len(models)} models, {len({r['model'] for r in compared})} with published figures, "
            f"{len(compared)} comparisons ({figures} params/MAdds figures), {verdict}")  # fmt: skip


def cmd_zoo(args) -> int:
    rows = []
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try `mobilenets list`")
    for name in names:
        model_profile = profile(create_model(name))
        comparisons = compare_published(name)
        if not comparisons:
            rows.append({"model": name, "params": model_profile.params, "madds": model_profile.madds})
        for comp in comparisons:
            pub = comp.published
            rows.append({
                "model": name, "source": pub.source, "resolution": pub.resolution,
                "params": comp.params, "madds": comp.madds,
                "published_params": pub.params, "published_madds": pub.madds,
                "checked_params": comp.params_text, "checked_madds": comp.madds_text,
                "params_diff": Comparison.relative(comp.params, comp.params_text),
                "madds_diff": Comparison.relative(comp.madds, comp.madds_text),
                "top1": pub.top1, "status": _status(comp), "erratum": pub.erratum, "note": pub.note,
            })  # fmt: skip
    # A mismatch fails the command whatever the output format: scripts read --json.
    failed = any(r.get("status") == "MISMATCH" for r in rows)
    if args.json:
        print(json.dumps(rows, indent=1))
        print(zoo_summary(rows), file=sys.stderr)
        return 1 if failed else 0
    header = (
        f"{'model':<32} {'source':<34} {'res':>4} {'params':>8} {'published':>10} {'diff':>6}"
        f" {'MAdds':>8} {'published':>10} {'diff':>6} {'top1':>5}  status"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "source" not in r:
            print(f"{r['model']:<32} {'(no published figures)':<34} {224:>4} {_millions(r['params']):>8}"
                  f" {'':>10} {'':>6} {r['madds'] / 1e6:>7.1f}M")  # fmt: skip
            continue
        print(
            f"{r['model']:<32} {r['source'][:34]:<34} {r['resolution']:>4} {_millions(r['params']):>8}"
            f" {r['published_params'] or '':>10} {_rel(r['params_diff']):>6} {r['madds'] / 1e6:>7.1f}M"
            f" {r['published_madds'] or '':>10} {_rel(r['madds_diff']):>6} {r['top1'] or '':>5}  {r['status']}"
        )
    errata = {r["erratum"] for r in rows if r.get("erratum")}
    if errata:
        print("\nErrata (the figure checked instead is in the diff column):")
        for text in sorted(errata):
            print(f"- {text}")
    print(f"\n{zoo_summary(rows)}")
    return 1 if failed else 0
