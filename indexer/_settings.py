"""The one settings model of cellvec, read from ``CELLVEC_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import DEFAULT_ENCODER


def _default_data_dir() -> Path:
    """Return ``../shared/data`` beside the checkout (or the working directory) when it exists.

    Otherwise ``~/.cellvec/data``, where ``cellvec genes fetch`` writes.
    """
    checkout = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), checkout):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.home() / ".cellvec" / "data"


def _default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/cellvec``, else ``~/.cache/cellvec`` (the XDG base-directory default)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellvec"


class Settings(BaseSettings):
    """Configuration of cellvec; every field can be set as ``CELLVEC_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CELLVEC_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Folder with NCBI gene descriptions, gene_info, orthologs and housekeeping lists."""

    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Folder for what cellvec can always rebuild: the parsed gene catalogs (``catalogs/``, one JSON file per
    species and version of the data files). Deleting it only costs time."""

    store: str = "./cellvec-store"
    """Default store: a directory (embedded Qdrant Edge), an ``http(s)://`` URL or ``":memory:"``."""

    encoder: str = DEFAULT_ENCODER
    """Default gene text encoder id: used by ``build_reference`` without a spec, gene search and the CLI."""

    qdrant_url: str | None = None
    """URL of a Qdrant server: ``open_store()`` without a location opens it (else ``store``); server tests
    run only when it is set."""

    qdrant_api_key: SecretStr | None = None
    """API key for the Qdrant server, if it needs one."""

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    """Key for ``openai:`` encoders (read from ``OPENAI_API_KEY``)."""

    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    """Base URL of an OpenAI-compatible embeddings server (read from ``OPENAI_BASE_URL``)."""

    search_processes: int | None = Field(default=None, ge=1)
    """Processes that search a large query batch (annotate) of a read-only store on disk: ``1`` searches in
    this process only; unset, the cores this process may use (at most 4)."""

    embed_batch_size: int = 64
    """Texts per encoder call for local models."""

    device: str | None = None
    """Torch device for local models and SupCon (``"cpu"``, ``"cuda"``); chosen automatically when unset."""
