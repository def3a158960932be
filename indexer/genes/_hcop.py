"""The HGNC HCOP human-mouse ortholog table: read once, and the best ortholog of each gene."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np

from schemas import Species

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from indexer.genes._orthologs import OrthologMap


logger = logging.getLogger(__name__)

_COLUMNS: Final = (
    "human_entrez_gene", "human_symbol", "mouse_entrez_gene", "mouse_symbol", "support",
)  # fmt: skip
_TABLES: dict[Path, pd.DataFrame] = {}
_MAPS: dict[tuple[Species, Species, Path, int], OrthologMap] = {}
"""Ortholog maps already built, by (query species, reference species, data folder, min support)."""
MIN_GENES: Final = 200
"""Default floor of query genes that must land on reference genes (:func:`check_mapping`)."""
MIN_MASS_SHARE: Final = 0.5
"""Default floor of the query's expression mass carried by genes with an ortholog (:func:`check_mapping`)."""


class Resolver(Protocol):
    """A species' gene-name resolver (:class:`indexer.GeneCatalog` fits)."""

    def resolve(self, names: Sequence[str]) -> np.ndarray:
        """Return the official symbol of each name (``""`` when it does not resolve)."""
        ...


def load_hcop(*, data_dir: Path | None = None) -> pd.DataFrame:
    """Read the HCOP human-mouse table once per process (about 0.3 s; cached per data folder).

    Parameters
    ----------
    data_dir
        Gene data folder (``orthologs/human_mouse_hcop_fifteen_column.txt.gz`` inside); default
        ``Settings().data_dir``.

    Returns
    -------
    Columns ``human_entrez_gene, human_symbol, mouse_entrez_gene, mouse_symbol`` (``""`` where HCOP has
    ``-``) and ``n_support`` (number of supporting resources); rows without both symbols dropped.

    Raises
    ------
    DataError
        When the file is missing or unreadable (the message says how to fetch it).
    """
    import pandas as pd

    from indexer._errors import DataError
    from indexer.genes._files import ORTHOLOG_TABLE, data_file

    if data_dir is None:
        from indexer._settings import Settings

        data_dir = Settings().data_dir
    key = Path(data_dir).expanduser().resolve()
    table = _TABLES.get(key)
    if table is not None:
        return table
    path = data_file(ORTHOLOG_TABLE, species="mouse", data_dir=key)
    t0 = time.perf_counter()
    try:
        # The C parser with only the needed columns; the wide name/assertion columns are never parsed.
        raw = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, usecols=list(_COLUMNS), quoting=3, engine="c"
        )
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as e:
        msg = f"cannot read the HCOP table {str(path)!r} ({e}); fetch it again with `cellvec genes fetch`"
        raise DataError(msg) from e
    raw = raw.replace("-", "")
    raw = raw[(raw["human_symbol"] != "") | (raw["human_entrez_gene"] != "")]
    raw = raw[(raw["mouse_symbol"] != "") | (raw["mouse_entrez_gene"] != "")]
    support = raw.pop("support")
    raw["n_support"] = (support.str.count(",") + (support != "")).astype(np.int16)
    table = raw.reset_index(drop=True)
    _TABLES[key] = table
    logger.info("read %s HCOP rows in %.2f s", f"{len(table):,}", time.perf_counter() - t0)
    return table


def _best_pairs(q: np.ndarray, r: np.ndarray, support: np.ndarray) -> pd.DataFrame:
    """Rank each query gene's orthologs (one-to-one, unique source, support, same name, name); keep the first."""
    import pandas as pd

    pairs = pd.DataFrame({"q": q, "r": r, "s": support})
    n_targets = pairs.groupby("q")["r"].transform("size")
    n_sources = pairs.groupby("r")["q"].transform("size")
    pairs["one_to_one"] = (n_targets == 1) & (n_sources == 1)
    pairs["one_to_many"] = n_targets > 1
    pairs["unique_source"] = n_sources == 1
    pairs["same_name"] = pairs["q"].str.upper() == pairs["r"].str.upper()
    pairs = pairs.sort_values(
        ["q", "one_to_one", "unique_source", "s", "same_name", "r"],
        ascending=[True, False, False, False, False, True],
        kind="stable",
    )
    best = pairs.drop_duplicates("q")[["q", "r", "one_to_one", "one_to_many", "s"]]
    return best.rename(columns={"s": "support"}).reset_index(drop=True)
