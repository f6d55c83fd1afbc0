"""The run-folder contract every stage that writes a run folder keeps (teacher, bank, student,
evaluation, and the demo and the sweeps through them): a config hash of what changes the result, a
record of it kept in the folder, *complete* as "the record holds this hash and the finished
artifacts are there", and a one-line refusal of a folder that another config made, naming the keys
that differ."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Callable, Iterable

import yaml

from clareps.config import differing_keys
from clareps.errors import ClarepsError
from clareps.io import hash_obj, read_json, read_yaml_or_none, write_text


def refuse_foreign_folder(out: str | Path, what: str, markers: Iterable[str] = (), own: Iterable[str] = (),
                          ours: bool = False) -> None:
    """Every verb's rule for its output folder, before any work: a new or empty folder, one that holds
    one of ``markers`` (the verb's own record: its run, to reuse, resume or refuse by config) or that the
    caller found to be ``ours`` (e.g. its record is of this kind), or one whose every entry matches a
    pattern of ``own`` (the files the verb writes). Any other folder holds someone else's files: refused,
    so that nothing is written among them. Hidden entries do not count."""
    out = Path(out)
    if ours or not out.is_dir() or any((out / m).exists() for m in markers):
        return
    others = sorted(p.name for p in out.iterdir()
                    if not p.name.startswith(".") and not any(fnmatch(p.name, pattern) for pattern in own))
    if others:
        raise ClarepsError(f"{out} holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}), "
                           f"not {what}: use a new --out folder")


def without(record: dict, keys: Iterable[str]) -> dict:
    """``record`` less ``keys`` and its stored hash."""
    leave = set(keys) | {"config_hash"}
    return {k: v for k, v in record.items() if k not in leave}


def hashed_part(config: dict, leave_out: Iterable[str] = (), inputs: dict | None = None) -> dict:
    """What a config hash is the hash of: the config less ``leave_out``, with the inputs' hashes."""
    kept = without(config, leave_out)
    return kept if inputs is None else dict(kept, inputs=inputs)


def config_hash(config: dict, leave_out: Iterable[str] = (), inputs: dict | None = None) -> str:
    return hash_obj(hashed_part(config, leave_out, inputs))


class RunContract:
    """One run folder's contract.

    ``config``: the plain config (what ``write`` records); ``leave_out``: its keys that do not change
    the result (run control, unused sections); ``inputs``: content hashes of the input artifacts, hashed
    with the config. ``record``: the file in the folder that keeps the hash (YAML, or JSON for a
    ``.json`` name); ``as_hashed`` turns a stored record into what was hashed (for the refusal's list
    of differing keys), by default the record less ``leave_out``. ``accepts``: the hashes earlier versions
    recorded for this same config (a key renamed since): a folder holding one is this run's.
    """

    def __init__(self, folder: str | Path, what: str, config: dict, *, leave_out: Iterable[str] = (),
                 inputs: dict | None = None, record: str = "config.yaml",
                 as_hashed: Callable[[dict], dict] | None = None, differs_in: str = "config",
                 accepts: Iterable[str] = ()):
        leave_out = tuple(leave_out)
        self.folder, self.what, self.config, self.inputs = Path(folder), what, config, inputs
        self.differs_in = differs_in  # what a refusal says differs: "config", "config or bank", ...
        self.path = self.folder / record
        self.hashed = hashed_part(config, leave_out, inputs)
        self.hash = hash_obj(self.hashed)
        self.accepts = {self.hash, *accepts}  # the hashes earlier versions gave this very config
        self._as_hashed = as_hashed or (lambda stored: without(stored, leave_out))

    def stored(self) -> dict | None:
        """The record in the folder, or None."""
        if self.path.suffix == ".json":
            return read_json(self.path) if self.path.exists() else None
        return read_yaml_or_none(self.path)

    def matches(self) -> bool:
        """The folder records this very config hash."""
        stored = self.stored()
        return stored is not None and stored.get("config_hash") in self.accepts

    def complete(self, *artifacts: str | Path) -> bool:
        """The folder records this config hash and holds the finished ``artifacts`` (names in it)."""
        return self.matches() and all((self.folder / a).exists() for a in artifacts)

    def other(self) -> str | None:
        """What differs, when the folder records another config hash ("key: there, here", ...); else None."""
        stored = self.stored()
        if stored is None or stored.get("config_hash") in self.accepts:
            return None
        return differing_keys(self._as_hashed(stored), self.hashed)

    def refuse_other(self, hint: str = "use a new --out") -> None:
        """A one-line error when the folder holds a run of another config."""
        diff = self.other()
        if diff is not None:
            raise ClarepsError(f"{self.folder} holds {self.what} with another {self.differs_in} ({diff}); {hint}")

    def write(self) -> Path:
        """Record the config, its hash (and the inputs' hashes) in the folder, atomically."""
        record = dict(self.config, config_hash=self.hash)
        if self.inputs is not None:
            record["inputs"] = self.inputs
        return write_text(self.path, yaml.safe_dump(record, sort_keys=False))
