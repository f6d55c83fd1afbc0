"""Atomic artifact writes, safetensors checkpoints with JSON sidecars, and hashing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from clareps.version import __version__
from clareps.errors import ClarepsError

HEADER_KEY = "clareps"  # the safetensors metadata entry that holds an artifact's description


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # after the write: mkstemp makes owner-only files, and safetensors recreates the file as 0600
        tmp_path.chmod(0o644)  # artifacts are meant to be shared
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def check_writable(folder: str | Path) -> Path:
    """Refuse, before any work, an output folder that cannot be written. Probes with a real file in
    the folder (or its nearest existing parent): permission bits say nothing for root or read-only mounts."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ClarepsError(f"cannot write to {folder}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".clareps-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ClarepsError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return folder


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ClarepsError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClarepsError(f"corrupt JSON file {path}: {exc}") from None


def append_jsonl(path: str | Path, obj: dict) -> None:
    """Append one JSON line; a crash leaves at most a partial last line, which readers skip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(obj, sort_keys=True) + "\n")
        fh.flush()


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_yaml_or_none(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ClarepsError(f"corrupt YAML file {path}") from None
    return data if isinstance(data, dict) else None


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def hash_obj(obj: Any) -> str:
    """A stable short hash of a JSON-serialisable object (config hashes, fingerprints)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def hash_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".json")


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of the tensors themselves (names, dtypes, shapes, bytes), independent of the file layout."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` as safetensors with ``meta`` inside the file, atomically, then a JSON sidecar.

    The file alone is complete: its header carries the metadata and a digest of the tensors, so a
    crash between the two writes cannot pair new weights with an old description. The sidecar is a
    readable copy (plus the file's hash) for people and tools.
    """
    path = Path(path)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta, clareps_version=__version__, tensors_digest=tensors_digest(flat))
    header = {HEADER_KEY: json.dumps(meta, sort_keys=True, default=str)}
    atomic_write(path, lambda p: save_file(flat, str(p), metadata=header))
    write_json(sidecar_path(path), dict(meta, tensors_sha256=hash_file(path)))
    return path


def read_meta(path: str | Path) -> dict:
    """The metadata `save_tensors` wrote into a safetensors file, from its header alone (no tensors read)."""
    path = Path(path)
    if not path.exists():
        raise ClarepsError(f"missing checkpoint: {path}")
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        raise ClarepsError(f"{path} is a folder, not a checkpoint file: give a .safetensors file{hint}")
    try:
        with safe_open(str(path), "pt") as fh:
            header = fh.metadata() or {}
        meta = json.loads(header[HEADER_KEY]) if HEADER_KEY in header else None
    except (SafetensorError, OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ClarepsError(f"corrupt checkpoint {path}: {exc}") from None
    if meta is None:
        raise ClarepsError(f"{path} carries no clareps metadata: not written by clareps, or by a version "
                           "before 0.1 kept it inside the file; rebuild it")
    return meta


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file written by `save_tensors` and its metadata, checking that they belong together."""
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ClarepsError(f"corrupt checkpoint {path}: {exc}") from None
    if meta.get("tensors_digest") != tensors_digest(tensors):
        raise ClarepsError(f"corrupt checkpoint {path}: its tensors do not match the digest written with them")
    return tensors, dict(meta, tensors_sha256=hash_file(path))
