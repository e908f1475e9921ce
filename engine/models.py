"""Find the base model: model folders in the workspace, the hub caches and the share folders.

Where a model may already be on this machine:

- the workspace (the demo models, a folder linked in as the tutorial does) and ``--model``;
- Hugging Face's cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
  ``models--ORG--NAME/snapshots/REV/`` whose files are symlinks into ``../../blobs/``;
- ModelScope's cache (``MODELSCOPE_CACHE``, else ``~/.cache/modelscope/hub``): ``ORG/NAME/`` and
  the newer ``models/ORG/NAME/`` (``.`` in a name is written ``___``);
- the tutorial platform's share folders (``/root/share/new_models``, ``/share/new_models``):
  ``ORG/NAME/`` such as ``Shanghai_AI_Laboratory/internlm2-chat-1_8b``.

Each folder is described without loading weights: the architecture from ``config.json``, the
parameter count from the safetensors headers (the first 8 bytes give the header's length; the
header gives every tensor's shape and dtype), estimated from the config's dimensions when the
weights are ``.bin`` or missing, the size on disk (hub symlinks followed once, each blob counted
once), the remote code it brings, and the XTuner built-in configs that fit its family.

Every root comes from :class:`SearchRoots` (``from_env``), so tests lay out fake caches anywhere.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SHARE_ROOTS = ("/root/share/new_models", "/share/new_models")
SHARE_ROOTS_ENV = "XTUNER_WIZARD_SHARE_ROOTS"  # os.pathsep-separated; "" for none
TUTORIAL_LINK = "Shanghai_AI_Laboratory/internlm2-chat-1_8b"  # the tutorial's layout
TUTORIAL_FAMILY = "internlm2"  # the tutorial's model's model_type

WEIGHT_SUFFIXES = (".safetensors", ".bin")
SAFETENSORS_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
SAFETENSORS_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "U8": "uint8",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses headers above 100 MB too
SKIP_DIRS = {
    ".wizard",
    "work_dirs",
    "hf",
    "__pycache__",
    ".git",
    "datas",
    "blobs",
    "refs",
    ".cache",
}


@dataclass(frozen=True)
class SearchRoots:
    """Where to look. ``from_env`` reads the same variables the hubs' own clients read."""

    hf_hub: Path | None = None
    modelscope: tuple[Path, ...] = ()
    share: tuple[Path, ...] = ()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, home: Path | None = None
    ) -> SearchRoots:
        env = os.environ if env is None else env
        home = Path(home) if home is not None else Path.home()
        cache = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
        hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
        if hub:
            hf_hub = Path(hub).expanduser()
        elif env.get("HF_HOME"):
            hf_hub = Path(env["HF_HOME"]).expanduser() / "hub"
        else:
            hf_hub = cache / "huggingface" / "hub"
        ms = env.get("MODELSCOPE_CACHE")
        if ms:
            # MODELSCOPE_CACHE is the hub folder for older clients, its parent for newer ones
            modelscope: tuple[Path, ...] = (Path(ms).expanduser(), Path(ms).expanduser() / "hub")
        else:
            modelscope = (cache / "modelscope" / "hub",)
        share_spec = env.get(SHARE_ROOTS_ENV)
        if share_spec is None:
            share = tuple(Path(p) for p in SHARE_ROOTS)
        else:
            share = tuple(Path(p).expanduser() for p in share_spec.split(os.pathsep) if p)
        return cls(hf_hub=hf_hub, modelscope=modelscope, share=share)


@dataclass
class ModelEntry:
    """One model folder and what it is, read from its files (no weights loaded)."""

    name: str  # ORG/NAME where known (hub caches, share folders), else the folder's name
    path: Path
    source: str  # workspace | --model | huggingface | modelscope | share
    architecture: str | None = None
    model_type: str | None = None
    parameters: int | None = None
    parameters_estimated: bool = False  # from config.json's dimensions, not the weights
    size_bytes: int = 0
    dtype: str | None = None
    remote_code: list[str] = field(default_factory=list)  # .py files it brings (auto_map, *.py)
    configs: list[str] = field(default_factory=list)  # fitting XTuner built-ins, best first
    revision: str | None = None  # the hub snapshot's commit
    problems: list[str] = field(default_factory=list)  # what keeps it from training as is

    @property
    def family(self) -> str | None:
        return self.model_type

    @property
    def usable(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["family"] = self.family
        return data


def format_params(n: int | None, estimated: bool = False) -> str:
    if n is None:
        return "?"
    mark = "~" if estimated else ""
    if n >= 1e9:
        return f"{mark}{n / 1e9:.2f}B"
    if n >= 1e5:
        return f"{mark}{n / 1e6:.1f}M"
    return f"{mark}{n / 1e3:.1f}K"


def is_tutorial_model(entry: ModelEntry) -> bool:
    """Whether ``entry`` is the tutorial's model, internlm2-chat-1_8b, whoever published it
    (``internlm/internlm2-chat-1_8b`` on the hub, ``Shanghai_AI_Laboratory/...`` on the share)."""
    tail = TUTORIAL_LINK.rsplit("/", 1)[1].lower()
    names = {entry.name.rsplit("/", 1)[-1].lower().replace(".", "_"), entry.path.name.lower()}
    return entry.model_type == TUTORIAL_FAMILY and tail in names


def workspace_name(entry: ModelEntry, *, tutorial: bool | None = None) -> str:
    """The name a model gets when linked into the workspace: the tutorial's
    (:data:`TUTORIAL_LINK`) with ``tutorial``, its own ``ORG/NAME`` without; by default the
    tutorial's for the tutorial's model (:func:`is_tutorial_model`), else its own."""
    if tutorial is None:
        tutorial = is_tutorial_model(entry)
    if tutorial:
        return TUTORIAL_LINK
    return entry.name if "/" in entry.name else f"models/{entry.name}"


# --- reading one folder ----------------------------------------------------------------------
def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file (tensor name -> dtype, shape, offsets)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _safetensors_stats(files: Iterable[Path]) -> tuple[int, Counter[str]]:
    """(parameters, bytes by dtype) over the tensors of ``files``."""
    params = 0
    by_dtype: Counter[str] = Counter()
    for f in files:
        for name, info in read_safetensors_header(f).items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            params += count
            by_dtype[str(info.get("dtype"))] += count * SAFETENSORS_BYTES.get(
                str(info.get("dtype")), 1
            )
    return params, by_dtype


def _auto_map_files(mapping: Any) -> set[str]:
    files: set[str] = set()
    if not isinstance(mapping, dict):
        return files
    for value in mapping.values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and "." in ref:
                ref = ref.split("--", 1)[-1]  # "org/repo--module.Class": code from another repo
                files.add(ref.rsplit(".", 1)[0] + ".py")
    return files


def disk_size(folder: Path) -> int:
    """Bytes the folder's files take, symlinks followed once and each file (blob) counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, files in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))  # follows the hub's symlink
            except OSError:
                continue  # a dangling link: the blob was deleted
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total


def _weights(folder: Path) -> tuple[list[Path], list[str]]:
    """The weight files a folder has, and the shards its index names that are missing."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix in WEIGHT_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    missing: list[str] = []
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            missing.append(f"{index.name} (unreadable)")
            continue
        missing += sorted(s for s in shards if not (folder / s).is_file())
    return files, missing


def describe_model(
    folder: Path, *, name: str | None = None, source: str = "path", revision: str | None = None
) -> ModelEntry | None:
    """A :class:`ModelEntry` for ``folder``, or None when it is no model folder (no config.json
    naming a model_type or architectures)."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or not (cfg.get("model_type") or cfg.get("architectures")):
        return None
    archs = cfg.get("architectures") or []
    entry = ModelEntry(
        name=name or folder.name,
        path=folder,
        source=source,
        architecture=str(archs[0]) if isinstance(archs, list) and archs else None,
        model_type=str(cfg["model_type"]) if cfg.get("model_type") else None,
        revision=revision,
    )
    try:
        files, missing = _weights(folder)
    except OSError as exc:
        entry.problems.append(f"unreadable: {exc.strerror}")
        return entry
    if missing:
        entry.problems.append(f"missing shards: {', '.join(missing[:3])}")
    if not files:
        entry.problems.append("no weights (*.safetensors or *.bin)")
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    if safetensors and not missing:
        try:
            params, by_dtype = _safetensors_stats(safetensors)
            entry.parameters = params
            if by_dtype:
                top = by_dtype.most_common(1)[0][0]
                entry.dtype = SAFETENSORS_DTYPES.get(top, top.lower())
        except (OSError, ValueError, struct.error) as exc:
            entry.problems.append(f"a weights file is damaged ({exc})")
    if entry.parameters is None:
        entry.parameters = _params_from_config(cfg)
        entry.parameters_estimated = entry.parameters is not None
    if entry.dtype is None and isinstance(cfg.get("torch_dtype"), str):
        entry.dtype = cfg["torch_dtype"]
    code = set(_auto_map_files(cfg.get("auto_map")))
    try:
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        if isinstance(tok_cfg, dict):
            code |= _auto_map_files(tok_cfg.get("auto_map"))
    except (OSError, ValueError):
        pass
    code |= {p.name for p in folder.glob("*.py")}
    entry.remote_code = sorted(code)
    entry.size_bytes = disk_size(folder)
    entry.configs = fitting_configs(entry.model_type, entry.parameters)
    return entry


def _params_from_config(cfg: dict[str, Any]) -> int | None:
    from engine.config.estimate import size_from_hf_config

    try:
        return size_from_hf_config(cfg).params
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def fitting_configs(model_type: str | None, params: float | None) -> list[str]:
    """XTuner's built-in configs for this family (empty when xtuner is not installed)."""
    from engine.config.builtin import configs_for_family
    from engine.errors import WizardError

    try:
        return configs_for_family(model_type, params)
    except WizardError:
        return []


# --- where folders are -----------------------------------------------------------------------
def _model_dirs(root: Path, depth: int) -> Iterator[Path]:
    """Folders holding a config.json under ``root`` (itself included), ``depth`` levels down;
    not below a model folder."""
    try:
        if (root / "config.json").is_file():
            yield root
            return
    except OSError:
        return
    if depth <= 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if child.name in SKIP_DIRS or child.name.startswith("."):
            continue
        yield from _model_dirs(child, depth - 1)


def _hf_cache(hub: Path) -> Iterator[tuple[str, Path, str]]:
    """(ORG/NAME, snapshot folder, revision) of the model snapshots in a Hugging Face cache."""
    try:
        repos = sorted(hub.glob("models--*"))
    except OSError:
        return
    for repo in repos:
        repo_id = repo.name[len("models--") :].replace("--", "/")
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        main = None
        try:
            main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            pass
        revs = sorted(p for p in snapshots.iterdir() if p.is_dir())
        # one snapshot per repo: the one refs/main names, else the newest
        revs.sort(key=lambda p: (p.name != main, -p.stat().st_mtime))
        for snap in revs:
            if (snap / "config.json").exists():
                yield repo_id, snap, snap.name
                break


def _org_name(root: Path, folder: Path) -> str:
    try:
        rel = folder.relative_to(root)
    except ValueError:
        return folder.name
    parts = rel.parts[-2:] if len(rel.parts) >= 2 else rel.parts
    return "/".join(parts).replace("___", ".")


def _modelscope(root: Path) -> Iterator[tuple[str, Path]]:
    for base in (root / "models", root):
        if not base.is_dir():
            continue
        for folder in _model_dirs(base, 2):
            top = folder.relative_to(root).parts[:1]
            if base == root and top in (("models",), ("datasets",)):
                continue  # the newer layout, read above (and never the datasets)
            yield _org_name(base, folder), folder


def discover(
    workspace: Path | None = None,
    *,
    model: str | Path | None = None,
    roots: SearchRoots | None = None,
) -> list[ModelEntry]:
    """Every model folder found, each once (by real path), in the order: ``--model``, the
    workspace, Hugging Face's cache, ModelScope's cache, the share folders."""
    roots = SearchRoots.from_env() if roots is None else roots
    found: list[ModelEntry] = []
    seen: set[str] = set()

    def add(folder: Path, **kw: Any) -> None:
        try:
            key = str(folder.resolve())
        except OSError:
            return
        if key in seen:
            return
        entry = describe_model(folder, **kw)
        if entry is not None:
            seen.add(key)
            found.append(entry)

    if model is not None and str(model):
        path = Path(model).expanduser()
        if workspace is not None and not path.is_absolute():
            from engine.demo import DEMO_FOLDERS, demo_arch

            arch = demo_arch(str(model))
            path = Path(workspace) / (DEMO_FOLDERS[arch] if arch else path)
        add(path, source="--model")
    if workspace is not None:
        for folder in _model_dirs(Path(workspace), 2):
            add(folder, name=_org_name(Path(workspace), folder), source="workspace")
    if roots.hf_hub is not None:
        for repo_id, snap, rev in _hf_cache(roots.hf_hub):
            add(snap, name=repo_id, source="huggingface", revision=rev)
    for ms_root in roots.modelscope:
        for name, folder in _modelscope(ms_root):
            add(folder, name=name, source="modelscope")
    for share in roots.share:
        for folder in _model_dirs(share, 2):
            add(folder, name=_org_name(share, folder), source="share")
    return found
