"""Width plans over a network's spec list, and carrying weights into a narrower plan by L2 norm.

A plan has one width per *channel slot*: each residual group (the stem's output, or a block's
output, together with every later block joined to it by an identity shortcut: they share a width
and are cut together), each block's own expansion (an inverted residual whose 1x1 expansion
exists; one without it takes its input's width), the last 1x1 conv (``final``) and MobileNetV3's
pre-logits layer (``features``). SE widths follow the expansion by the family's rule
(P-V3: ``make_divisible(exp / 4, 8)``). Applying a plan edits ``stem_chs``, ``blocks`` and
``head_chs``/``num_features`` of the model's config, so a narrowed model is an ordinary model.

Used by NetAdapt (``search/``) and by ``--init-backbone`` (``tasks/dense.py``: a classifier cut to a
reduced tail); it builds with ``models.build`` and imports nothing above the models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers import make_divisible
from .build import build_from_config
from .spec import BlockSpec

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3")
STEP = 8  # channel counts stay multiples of 8 (the official reimplementation's MIN_CONV_FEATURE_SIZE)


def se_width(exp_chs: int) -> int:
    """P-V3 Sec 5.3 / resolve_v3: the squeeze is a quarter of the expansion, a multiple of 8."""
    return make_divisible(exp_chs / 4, STEP)


@dataclass(frozen=True)
class Slot:
    """One prunable width: ``kind`` "group" (index into groups), "exp" (a block index), "final" or "features"."""

    kind: str
    index: int = 0

    @property
    def id(self) -> str:
        if self.kind == "group":
            return "stem" if self.index == 0 else f"group{self.index}"
        if self.kind == "exp":
            return f"exp{self.index}"
        return self.kind


@dataclass
class Layout:
    """Which widths of a network are tied: computed once from its block specs."""

    family: str
    blocks: list[BlockSpec]
    group_in: list[int]  # residual group of each block's input
    group_out: list[int]  # ... and of its output
    own_exp: list[bool]  # the block has a 1x1 expansion of its own width
    members: list[list[int]]  # per group: -1 for the stem, else the blocks whose output it is
    has_final: bool
    has_features: bool

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        family = getattr(model, "family", "")
        if family not in FAMILIES:
            raise ValueError(f"NetAdapt adapts {', '.join(FAMILIES)} models; {getattr(model, 'name', family)!r} "
                             f"is a {family or type(model).__name__}")  # fmt: skip
        blocks = list(model.blocks)
        group_in, group_out, members = [], [], [[-1]]
        for b, spec in enumerate(blocks):
            g = group_out[-1] if b else 0
            group_in.append(g)
            if spec.residual:
                group_out.append(g)
                members[g].append(b)
            else:
                members.append([b])
                group_out.append(len(members) - 1)
        own_exp = [spec.kind == "ir" and spec.exp_chs != spec.in_chs for spec in blocks]
        has_final = not isinstance(model.final_conv, nn.Identity)
        has_features = not isinstance(model.pre_logits, nn.Identity)
        return cls(family, blocks, group_in, group_out, own_exp, members, has_final, has_features)

    def slots(self) -> list[Slot]:
        """Every prunable width, in network order (the proposals of one NetAdapt iteration)."""
        out = [Slot("group", 0)]
        for b in range(len(self.blocks)):
            if self.own_exp[b]:
                out.append(Slot("exp", b))
            g = self.group_out[b]
            if self.members[g][0] == b:
                out.append(Slot("group", g))
        if self.has_final:
            out.append(Slot("final"))
        if self.has_features:
            out.append(Slot("features"))
        return out

    def describe(self, slot: Slot) -> str:
        if slot.kind == "group":
            blocks = [b for b in self.members[slot.index] if b >= 0]
            where = ("stem" if -1 in self.members[slot.index] else "") + (
                f"{' + ' if slot.index == 0 and blocks else ''}block{'s' if len(blocks) > 1 else ''} "
                f"{', '.join(map(str, blocks))}"
                if blocks
                else ""
            )
            return f"output width of {where}"
        if slot.kind == "exp":
            return f"expansion of block {slot.index}"
        return "last 1x1 conv" if slot.kind == "final" else "pre-logits layer"


@dataclass(frozen=True)
class WidthPlan:
    """Channel counts of every slot; JSON as ``as_dict``. ``exp[b]`` is 0 for a block without its own expansion."""

    groups: tuple[int, ...]
    exp: tuple[int, ...]
    final: int = 0
    features: int = 0

    @classmethod
    def of(cls, model: nn.Module) -> WidthPlan:
        layout = Layout.of(model)
        groups = [model.stem.conv.out_channels] + [0] * (len(layout.members) - 1)
        for b, spec in enumerate(layout.blocks):
            groups[layout.group_out[b]] = spec.out_chs
        exp = tuple(spec.exp_chs if own else 0 for spec, own in zip(layout.blocks, layout.own_exp, strict=True))
        final = model.final_conv.conv.out_channels if layout.has_final else 0
        features = model.pre_logits[0].out_features if layout.has_features else 0
        return cls(tuple(groups), exp, final, features)

    def get(self, slot: Slot) -> int:
        if slot.kind == "group":
            return self.groups[slot.index]
        if slot.kind == "exp":
            return self.exp[slot.index]
        return getattr(self, slot.kind)

    def with_width(self, slot: Slot, width: int) -> WidthPlan:
        if slot.kind == "group":
            groups = list(self.groups)
            groups[slot.index] = width
            return WidthPlan(tuple(groups), self.exp, self.final, self.features)
        if slot.kind == "exp":
            exp = list(self.exp)
            exp[slot.index] = width
            return WidthPlan(self.groups, tuple(exp), self.final, self.features)
        return WidthPlan(self.groups, self.exp, **{**self._tail(), slot.kind: width})

    def _tail(self) -> dict:
        return {"final": self.final, "features": self.features}

    def as_dict(self) -> dict:
        return {"groups": list(self.groups), "exp": list(self.exp), "final": self.final, "features": self.features}

    @classmethod
    def from_dict(cls, data: dict) -> WidthPlan:
        return cls(tuple(data["groups"]), tuple(data["exp"]), data.get("final", 0), data.get("features", 0))

    def scaled(self, layout: Layout, mult: float) -> WidthPlan:
        """Every width times ``mult`` (multiples of 8), nudged where a tie of the seed would change: a uniform
        width multiplier of the same family, for the comparison."""
        plan = WidthPlan(
            tuple(make_divisible(w * mult, STEP) for w in self.groups),
            tuple(make_divisible(w * mult, STEP) if w else 0 for w in self.exp),
            make_divisible(self.final * mult, STEP) if self.final else 0,
            make_divisible(self.features * mult, STEP) if self.features else 0,
        )
        for b in range(len(self.exp)):
            while plan.exp[b] and plan.exp[b] == plan.groups[layout.group_in[b]]:
                plan = plan.with_width(Slot("exp", b), plan.exp[b] + STEP)
        for b, spec in enumerate(layout.blocks):  # a block without shortcut must keep in != out
            g_in, g_out = layout.group_in[b], layout.group_out[b]
            while g_in != g_out and spec.stride == 1 and spec.kind == "ir" and plan.groups[g_in] == plan.groups[g_out]:
                plan = plan.with_width(Slot("group", g_out), plan.groups[g_out] + STEP)
        problem = plan.problem(layout)
        if problem:
            raise ValueError(f"width multiplier {mult}: {problem}")
        return plan

    def problem(self, layout: Layout) -> str | None:
        """Why this plan cannot be built with the seed's structure, or None."""
        widths = list(self.groups) + [w for w in self.exp if w] + [w for w in (self.final, self.features) if w]
        if min(widths) < 1:
            return "every width must be >= 1"
        for b, spec in enumerate(layout.blocks):
            w_in, w_out = self.groups[layout.group_in[b]], self.groups[layout.group_out[b]]
            if layout.own_exp[b] and self.exp[b] == w_in:
                return f"block {b}'s expansion would equal its input width {w_in} (the 1x1 expansion would vanish)"
            residual = spec.kind in ("ir", "shuffle") and spec.stride == 1 and w_in == w_out
            if residual != spec.residual:
                return f"block {b} would {'gain' if residual else 'lose'} its identity shortcut ({w_in} -> {w_out})"
        return None

    def blocks(self, layout: Layout) -> list[BlockSpec]:
        out = []
        for b, spec in enumerate(layout.blocks):
            w_in, w_out = self.groups[layout.group_in[b]], self.groups[layout.group_out[b]]
            changes = {"in_chs": w_in, "out_chs": w_out}
            if spec.kind == "ir":
                exp = self.exp[b] if layout.own_exp[b] else w_in
                changes.update(exp_chs=exp, se_chs=se_width(exp) if spec.se_chs else 0)
            out.append(spec.replace(**changes))
        return out

    def config(self, model: nn.Module) -> dict:
        """``model.config`` with this plan's widths: build it with ``models.build.build_from_config``."""
        layout = Layout.of(model)
        problem = self.problem(layout)
        if problem:
            raise ValueError(f"invalid width plan: {problem}")
        config = copy.deepcopy(model.config)
        options = config["options"]
        options["stem_chs"] = self.groups[0]
        options["blocks"] = [spec.to_dict() for spec in self.blocks(layout)]
        if layout.has_final:
            options["head_chs"] = self.final
        if layout.has_features:
            options["num_features"] = self.features
        return config

    def total(self) -> int:
        return sum(self.groups) + sum(self.exp) + self.final + self.features


# --- which tensor dimension belongs to which slot ------------------------------------------------


@dataclass
class Entry:
    """A module whose output channels are ``out`` and input channels ``into`` (slot keys; None: not pruned).

    ``rank``: its filters' L2 norms rank the channels of ``out`` (the convs that produce a slot; not BN,
    not depthwise, not SE's gate).
    """

    module: str
    out: tuple | None
    into: tuple | None
    rank: bool = False


@dataclass
class ChannelMap:
    layout: Layout
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def of(cls, model: nn.Module) -> ChannelMap:
        layout = Layout.of(model)
        cmap = cls(layout)
        add = cmap.entries.append

        def conv_bn(prefix: str, out, into, rank: bool):
            add(Entry(f"{prefix}.conv", out, into, rank))
            add(Entry(f"{prefix}.bn", out, None))

        g0 = ("group", 0)
        conv_bn("stem", g0, None, True)
        counters: dict[int, int] = {}
        for b, spec in enumerate(layout.blocks):
            j = counters[spec.stage] = counters.get(spec.stage, -1) + 1
            p = f"stages.{spec.stage}.{j}"
            g_in, g_out = ("group", layout.group_in[b]), ("group", layout.group_out[b])
            if spec.kind == "ir":
                e = ("exp", b) if layout.own_exp[b] else g_in
                if layout.own_exp[b]:
                    conv_bn(f"{p}.expand", e, g_in, True)
                conv_bn(f"{p}.dw", e, None, False)
                if spec.se_chs:
                    add(Entry(f"{p}.se.fc1", ("se", b), e, True))
                    add(Entry(f"{p}.se.fc2", e, ("se", b)))
                conv_bn(f"{p}.project", g_out, e, True)
            elif spec.kind == "ds":
                conv_bn(f"{p}.dw", g_in, None, False)
                conv_bn(f"{p}.pw", g_out, g_in, True)
            elif spec.kind == "conv":
                add(Entry(f"{p}.conv", g_out, g_in, True))
                add(Entry(f"{p}.bn", g_out, None))
            else:
                raise ValueError(f"NetAdapt cannot narrow {spec.kind!r} blocks")
        last = ("group", layout.group_out[-1])
        if layout.has_final:
            conv_bn("final_conv", ("final",), last, True)
            last = ("final",)
        if layout.has_features:
            add(Entry("pre_logits.0", ("features",), last, True))
            last = ("features",)
        add(Entry("classifier", None, last))
        return cmap

    def consumers(self, slot: tuple) -> list[Entry]:
        return [e for e in self.entries if e.into == slot]


def _slot_key(slot: Slot) -> tuple:
    return (
        ("group", slot.index) if slot.kind == "group" else ("exp", slot.index) if slot.kind == "exp" else (slot.kind,)
    )


def channel_norms(model: nn.Module, cmap: ChannelMap | None = None) -> dict[tuple, torch.Tensor]:
    """L2 norm of each channel's filters per slot, summed over the slot's producers (a residual group's
    channels are ranked by every projection that writes them, so one ranking holds across the shortcuts)."""
    cmap = cmap or ChannelMap.of(model)
    modules = dict(model.named_modules())
    norms: dict[tuple, torch.Tensor] = {}
    for e in cmap.entries:
        if e.rank and e.out is not None:
            w = modules[e.module].weight.detach()
            n = w.flatten(1).norm(dim=1)
            norms[e.out] = norms[e.out] + n if e.out in norms else n
    return norms


def kept_channels(model: nn.Module, plan: WidthPlan, cmap: ChannelMap | None = None) -> dict[tuple, torch.Tensor]:
    """Per slot, the indices (ascending) of the channels ``plan`` keeps: the largest-L2-norm ones."""
    cmap = cmap or ChannelMap.of(model)
    layout = cmap.layout
    norms = channel_norms(model, cmap)
    new_blocks = plan.blocks(layout)
    widths: dict[tuple, int] = {}
    for slot in layout.slots():
        widths[_slot_key(slot)] = plan.get(slot)
    for b, spec in enumerate(new_blocks):
        if spec.se_chs:
            widths[("se", b)] = spec.se_chs
    kept = {}
    for key, norm in norms.items():
        n = widths[key]
        if n > len(norm):
            raise ValueError(f"plan widens {key} from {len(norm)} to {n}: NetAdapt only narrows")
        kept[key] = torch.sort(torch.topk(norm, n, sorted=False).indices).values if n < len(norm) else torch.arange(n)
    return kept


def narrow(model: nn.Module, plan: WidthPlan) -> nn.Module:
    """A new model with ``plan``'s widths whose weights are ``model``'s on the kept (largest-L2) channels.

    Where only whole channels are dropped (no SE width change), the result computes exactly what
    ``model`` computes with the dropped channels' consumers zeroed.
    """
    cmap = ChannelMap.of(model)
    kept = kept_channels(model, plan, cmap)
    narrow_model = build_from_config(plan.config(model))
    by_module = {e.module: e for e in cmap.entries}
    source = model.state_dict()
    target = {}
    for key, value in narrow_model.state_dict().items():
        module, _, _param = key.rpartition(".")
        tensor = source[key]
        entry = by_module.get(module)
        if entry is not None and tensor.dim() >= 1:
            if entry.out is not None:
                tensor = tensor.index_select(0, kept[entry.out])
            if entry.into is not None and tensor.dim() >= 2:
                tensor = tensor.index_select(1, kept[entry.into])
        if tensor.shape != value.shape:
            raise ValueError(
                f"{key}: carried {tuple(tensor.shape)} into {tuple(value.shape)} (a bug in the channel map)"
            )
        target[key] = tensor.clone()
    narrow_model.load_state_dict(target)
    for attr in ("labels", "preprocessing"):
        setattr(narrow_model, attr, getattr(model, attr, None))
    narrow_model.metadata = {}
    return narrow_model.train(model.training)
