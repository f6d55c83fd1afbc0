"""``Bank``: a canonical bank on disk (build, load, compare), over ``clareps.bank``'s builder and format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clareps.api.settings import build
from clareps.bank.build import BankConfig
from clareps.bank.format import Bank as BankData


@dataclass
class BankComparison:
    """Banks of the same items compared to a reference, item by item: one row per (bank, measure)
    with both means, the difference (other - reference), its 95 % interval over items and a verdict."""

    banks: list[Path]
    rows: list[dict]

    def to_markdown(self) -> str:
        from clareps.studies.bank_compare import compare_markdown

        return compare_markdown(self.banks, self.rows)


class Bank:
    """A bank folder and what it holds: ``images``, ``features``, ``labels``, ``latents``,
    ``singular_values``, ``source_index`` and ``meta`` (the resolved settings, teacher and data hashes)."""

    def __init__(self, path: str | Path, data: BankData):
        self.path, self.data = Path(path), data

    @classmethod
    def build(cls, out: str | Path, config: BankConfig | str | Path | None = None, quiet: bool = True,
              **settings: Any) -> "Bank":
        """``clareps bank build``: build (or reuse, or resume) a bank in ``out``. ``config``: a
        ``BankConfig``, a YAML file or a preset name (default: ``bank-default`` with the CLARID settings
        of the teacher's kind). ``settings``: its keys as keywords (``per_class=5``, ``teacher="my-dit"``,
        ``teacher_classes=[...]``, ``clarid={"k": 8}`` or ``**{"clarid.k": 8}``), validated."""
        from clareps.bank.build import build_bank
        from clareps.clarid.presets import bank_defaults
        from clareps.config import build_config, override
        from clareps.paths import resolve_preset

        if config is None:
            cfg = build_config(BankConfig, override(bank_defaults(settings.get("teacher")), settings), "settings")
        else:
            base = config if isinstance(config, BankConfig) else resolve_preset(str(config), "bank-default")
            cfg = build(BankConfig, base, settings)
        return cls(out, build_bank(cfg, out, quiet=quiet)[0])

    @classmethod
    def load(cls, path: str | Path) -> "Bank":
        from clareps.bank.format import load_bank

        return cls(path, load_bank(path))

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str):
        if name in ("path", "data"):
            raise AttributeError(name)
        return getattr(self.data, name)

    def __repr__(self) -> str:
        return f"Bank({self.path}, {len(self)} items, k={self.data.meta.get('k')})"

    def compare(self, *others: "Bank | str | Path", judge: str | Path | None = None,
                mask_judge: str | Path | None = None) -> BankComparison:
        """``clareps bank compare``: each other bank (the same items: same data, per_class, seed, source)
        against this one, per item, with the shape judge (default: the shipped one) and the mask judge."""
        from clareps.paths import default_judge, default_mask_judge
        from clareps.studies.bank_compare import compare_banks

        folders = [self.path] + [Path(o.path if isinstance(o, Bank) else o) for o in others]
        mask = mask_judge or default_mask_judge()
        rows = compare_banks(folders, Path(judge or default_judge()), Path(mask) if Path(mask).is_file() else None)
        return BankComparison(folders, rows)
