"""Model directories (``model.safetensors`` + ``config.json``), atomic writes and the output policy.

Nothing here leaves a half-written file: every file is written to a temporary
name beside its target, flushed to disk, then renamed over it; a model directory
is assembled in a temporary sibling and its files moved in, the config last. Nothing we did not write
is replaced or deleted: ``check_output`` is the one rule every command applies to its output
path (new or empty, or ours and ``overwrite`` asked for). Files and directories get
the modes the user's umask gives, as any other file they write.

Where it sits: above ``pretrained`` (NAME.TAG -> a shipped directory) and ``models.build`` (a config's
family and options -> a module, which ``load_model`` builds with); below ``models.factory``
(``create_model``, whose ``pretrained=`` loads through here) and everything that reads or writes
models. ``resolve_model_dir`` is the one place a run directory stands for its ``best/`` model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from .models.build import build_from_config
from .models.net import Network, upgrade_state_dict
from .preprocessing import Preprocessing, default_preprocessing
from .pretrained import pretrained_dir, shadow_hint
from .pretrained import resolve as resolve_pretrained

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BEST_DIR = "best"  # a training run's model directory: the epoch its validation split chose


# --- the output policy ----------------------------------------------------------


class OutputExistsError(ValueError):
    """The output path holds something that may not be replaced; nothing was written or removed."""


OVERWRITE_HINT = "pass --overwrite to replace it (overwrite=True in Python)"


def check_output(
    path: str | os.PathLike,
    *,
    directory: bool = True,
    overwrite: bool = False,
    ours: Callable[[Path], bool] | None = None,
    what: str = "a model directory",
    hint: str = OVERWRITE_HINT,
) -> str:
    """Apply the output policy to ``path``; returns ``"new"``, ``"empty"`` (a directory) or ``"ours"``.

    A directory output may be missing or empty; one that ``ours`` recognises (e.g. a model
    directory) is replaced only with ``overwrite``; anything else is refused. A file output may
    be missing, or an existing file replaced with ``overwrite``. Refusals raise OutputExistsError
    (one line naming the path and the fix) and touch nothing.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return "new"
    if directory:
        if not path.is_dir():
            raise OutputExistsError(f"{path} exists and is not a directory; nothing was written: "
                                    "choose a new or empty directory")  # fmt: skip
        if not any(path.iterdir()):
            return "empty"
        if ours is None or not ours(path):
            raise OutputExistsError(f"{path} is not empty and is not {what}; nothing was written: "
                                    "choose a new or empty directory")  # fmt: skip
        if not overwrite:
            raise OutputExistsError(f"{path} already holds {what}; {hint}")
        return "ours"
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory; nothing was written: give a file path")
    if not overwrite:
        raise OutputExistsError(f"{path} already exists; {hint}")
    return "ours"


def is_model_dir(path: str | os.PathLike) -> bool:
    """``path`` holds a config.json written by mobilenets and a model.safetensors.

    One written by a newer mobilenets, or hand-edited into something invalid, is still one:
    ``load_model`` says what is wrong with it (not "not a model directory").
    """
    path = resolve_pretrained(path)
    try:
        _read_config_document(path / CONFIG_FILE)
    except (OSError, ValueError):
        return False
    return (path / WEIGHTS_FILE).is_file()


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The model directory that ``path`` names: shipped weights ``NAME.TAG``, a model directory itself, or a
    training run directory's ``best/`` model. A FileNotFoundError (one line) when it is none of them.

    Every command that takes "a model directory or a run" comes here; what is wrong inside a model
    directory (a bad config.json, missing weights) is left to ``read_config``/``load_model`` to name.
    """
    given = Path(path)
    path = resolve_pretrained(given)
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / BEST_DIR / CONFIG_FILE).is_file():
        return path / BEST_DIR
    raise FileNotFoundError(
        f"{path} is neither a run directory (with {BEST_DIR}/) nor a model directory (with {CONFIG_FILE})"
        + shadow_hint(given)
    )


def remove_ours(path: str | os.PathLike) -> None:
    """Delete a directory that ``check_output`` allowed to be replaced: renamed away first, so a
    crash mid-delete leaves no half directory under the user's name."""
    path = Path(path).absolute()
    gone = temp_sibling(path, directory=True, suffix=".old")
    os.replace(path, gone / path.name)
    _fsync_dir(path.parent)
    shutil.rmtree(gone, ignore_errors=True)


# --- temporary siblings -----------------------------------------------------------
# A file or directory is built under a hidden name beside its target, ``.NAME.PID-XXXXXXXX.tmp``,
# then renamed over it. A process killed with -9 cannot clean up: the first write of a process into a
# directory removes the leftovers of dead processes there (once, not at every write: a folder of 10,000
# pictures is listed once). Only names of this exact shape are touched.

_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[a-z0-9_]+\.(tmp|old)$")
_SWEPT: set[Path] = set()


def temp_sibling(path: Path, *, directory: bool = False, suffix: str = ".tmp") -> Path:
    """A new, empty hidden file (or directory) beside ``path`` named after it and this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.absolute() not in _SWEPT:
        sweep_stale(path.parent)
    prefix = f".{path.name}.{os.getpid()}-"
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Remove the temporary files and folders in ``directory`` that dead processes of ours left behind."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(directory).iterdir():
            match = _TEMP_NAME.match(entry.name)
            if match is None or _pid_alive(int(match["pid"])):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        _SWEPT.add(Path(directory).absolute())
    return removed


# --- file modes -------------------------------------------------------------------


def _umask() -> int:
    # /proc reads it without changing it (os.umask would, for a moment, for every thread).
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode open()/mkdir() would give a new file or directory under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _chmod_like_new(path: Path, target: Path | None = None) -> None:
    """mkstemp/mkdtemp make 0600/0700; give the user's usual mode (an existing target's own mode)."""
    try:
        mode = os.stat(target).st_mode & 0o7777 if target is not None else None
    except OSError:
        mode = None
    os.chmod(path, mode if mode is not None else default_mode(path.is_dir()))


# --- atomic writes --------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the finished file to ``path``.

    If ``write`` raises (or the process dies), ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        write(tmp)
        _chmod_like_new(tmp, path)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    ours: Callable[[Path], bool] | None = is_model_dir,
    what: str = "a model directory",
    last: str | None = CONFIG_FILE,
) -> Iterator[Path]:
    """Build a directory in a temporary sibling; on success its entries take their place in ``path``.

    ``path`` must pass ``check_output`` (missing, empty, or ``ours`` with ``overwrite``), before
    and again at the swap. A new directory is renamed into place whole. Into an existing one (empty,
    or ours to replace) the entries are moved one by one, ``last`` (the file that marks it complete)
    last: each of our files is replaced, and anything else in it (an export, a user's note) stays.
    """
    path = Path(path).absolute()
    check_output(path, overwrite=overwrite, ours=ours, what=what)
    tmp = temp_sibling(path, directory=True)
    _chmod_like_new(tmp)
    try:
        yield tmp
        _fsync_dir(tmp)
        state = check_output(path, overwrite=overwrite, ours=ours, what=what)  # it may have changed meanwhile
        if state == "new":
            os.replace(tmp, path)
        else:
            for entry in sorted(tmp.iterdir(), key=lambda p: (p.name == last, p.name)):
                target = path / entry.name
                if target.is_dir() and not target.is_symlink():  # a directory of ours: renamed away, then deleted
                    remove_ours(target)
                os.replace(entry, target)
            _fsync_dir(path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- state dicts ----------------------------------------------------------------


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a ValueError naming the first key that does not fit ``model`` (missing, unexpected or mis-shaped)."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise ValueError(f"{source} does not fit {getattr(model, 'name', 'the model')}: missing key {key!r} "
                             f"(expected shape {tuple(value.shape)})")  # fmt: skip
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{source} does not fit {getattr(model, 'name', 'the model')}: {key!r} has shape "
                f"{tuple(state_dict[key].shape)} in the {source} but {tuple(value.shape)} in the model; "
                "check the variant name and num_classes"
            )
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise ValueError(f"{source} does not fit {getattr(model, 'name', 'the model')}: unexpected key "
                         f"{unexpected[0]!r} ({len(unexpected)} unexpected in all)")  # fmt: skip


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    return model


# --- model directories ------------------------------------------------------------


def save_model(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    labels: list[str] | None = None,
    preprocessing: Preprocessing | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` as ``directory/model.safetensors`` + ``directory/config.json``, atomically.

    ``directory`` must be new or empty; an existing model directory's two files are replaced only with
    ``overwrite`` (other files in it, such as an export, stay); anything else is refused with
    OutputExistsError and left as it is.
    ``labels`` and ``preprocessing`` default to the model's own (set by load_model,
    training or a converter), else ImageNet-style preprocessing.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not config or not config.get("family"):
        raise TypeError(f"save_model needs a mobilenets model (from create_model), got {type(model).__name__}")
    labels = labels if labels is not None else getattr(model, "labels", None)
    if labels is not None and len(labels) != model.num_classes:
        raise ValueError(f"{len(labels)} labels given for a model with {model.num_classes} classes")
    preprocessing = preprocessing or getattr(model, "preprocessing", None) or default_preprocessing(model.in_chans)
    document = {
        "format_version": FORMAT_VERSION,
        **config,
        "num_classes": model.num_classes,
        "labels": list(labels) if labels is not None else None,
        "preprocessing": preprocessing.to_dict(),
        "metadata": metadata or getattr(model, "metadata", None) or {},
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "mobilenets": str(FORMAT_VERSION)})
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n")
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            _chmod_like_new(tmp / name)
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
    return Path(directory)


def read_config(directory: str | os.PathLike) -> dict:
    """A model directory's config.json, checked field by field: a bad field is one line naming the file and it."""
    directory = resolve_pretrained(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a directory; a model directory holds {WEIGHTS_FILE} and {CONFIG_FILE}"
        )
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a model directory: it has no {CONFIG_FILE} "
            "(create one with `mobilenets convert`, `mobilenets train` or mobilenets.save_model)"
            + shadow_hint(directory)
        )
    config = _read_config_document(config_path)
    _check_config(config, config_path)
    return config


def _read_config_document(config_path: Path) -> dict:
    """The JSON object of a config.json with the two fields that mark it as mobilenets' (nothing else checked)."""
    try:
        config = json.loads(config_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{config_path} is not UTF-8 JSON; a config.json is UTF-8 text "
                         "(restore it, or re-save the model)") from None  # fmt: skip
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} holds a JSON {_json_type(config)}, not a mobilenets config object")
    for key in ("family", "options"):
        if key not in config:
            raise ValueError(f"{config_path} has no {key!r} field; it was not written by mobilenets")
    return config


def _json_type(value) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_config(config: dict, config_path: Path) -> None:
    """The fields load_model uses, each of the JSON type it needs (a hand edit fails here, not in a builder)."""
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"{config_path}: format_version must be a whole number like {FORMAT_VERSION}, "
                         f"got {version!r}; restore it (the version of mobilenets that wrote the file)")  # fmt: skip
    if version > FORMAT_VERSION:
        raise ValueError(f"{config_path} was written by a newer mobilenets (format {version}); this one reads "
                         f"up to format {FORMAT_VERSION}: upgrade mobilenets")  # fmt: skip
    expected = {"family": (str, "a family name such as 'mobilenet_v3'"),
                "options": (dict, "an object of the builder's options ({} for its defaults)"),
                "name": ((str, type(None)), "a model name or null"),
                "labels": ((list, type(None)), "a list of class names or null"),
                "preprocessing": ((dict, type(None)), "an object of preprocessing fields or null"),
                "metadata": ((dict, type(None)), "an object or null")}  # fmt: skip
    for key, (types, what) in expected.items():
        if key in config and not isinstance(config[key], types):
            raise ValueError(f"{config_path}: {key} must be {what}, got a JSON {_json_type(config[key])}")
    labels = config.get("labels") or []
    bad = next((i for i, label in enumerate(labels) if not isinstance(label, str)), None)
    if bad is not None:
        raise ValueError(f"{config_path}: labels[{bad}] must be a string, got {labels[bad]!r}")
    if config.get("preprocessing") is not None:
        try:
            Preprocessing.from_dict(config["preprocessing"])
        except (ValueError, TypeError) as err:
            raise ValueError(f"{config_path}: preprocessing: {err}") from None


def load_model(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model directory written by save_model; returns the model in eval mode.

    The model carries ``labels``, ``preprocessing`` and ``metadata`` from the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_pretrained(directory)
    config = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} is not a complete model directory: it has no {WEIGHTS_FILE}")
    try:
        state_dict = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is not a readable safetensors file ({err}); it may be truncated") from None
    try:
        model = build_from_config(config)
    except ValueError as err:  # an option out of range (names it): say which file holds it
        raise ValueError(f"{directory / CONFIG_FILE}: options: {err}") from None
    if isinstance(model, Network):  # old classifier directories; a task model's ``head`` is its own
        state_dict = upgrade_state_dict(state_dict)
    load_state_dict_checked(model, state_dict, source=str(weights))
    labels = config.get("labels")
    if labels is not None and len(labels) != model.num_classes:
        # Checked here, where labels are read, so that predict never indexes past a short list.
        raise ValueError(f"{directory / CONFIG_FILE} lists {len(labels)} labels for a model with "
                         f"{model.num_classes} classes; give one label per class (or null for none)")  # fmt: skip
    model.labels = labels
    model.preprocessing = Preprocessing.from_dict(config["preprocessing"]) if config.get("preprocessing") else None
    model.metadata = config.get("metadata") or {}
    return model.to(device).eval()


def load_pretrained(name: str, tag: str = "fashion-mnist") -> nn.Module:
    """The shipped model ``name`` with weights ``tag``, in eval mode, with its labels and preprocessing."""
    return load_model(pretrained_dir(name, tag))
