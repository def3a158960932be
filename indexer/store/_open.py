"""Open a store by location: a directory (Qdrant Edge), a server URL, or ``":memory:"``."""

from __future__ import annotations

import os
from pathlib import Path

from indexer.store._protocol import VectorStore
from schemas import IndexParams


def open_store(
    location: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
    api_key: str | None = None,
    index: IndexParams | None = None,
    search_processes: int | None = None,
) -> VectorStore:
    """Open the store at ``location``.

    Parameters
    ----------
    location
        A directory (embedded Qdrant Edge), an ``http://`` / ``https://`` URL of a Qdrant server, or
        ``":memory:"`` (qdrant-client local mode; tests only). ``None`` (the default) opens
        ``CELLVEC_QDRANT_URL`` when it is set, else ``CELLVEC_STORE`` (``./cellvec-store``).
    create
        Create the store when the directory does not exist yet (ignored for servers and ``":memory:"``).
    read_only
        Never write: every write method raises :class:`~indexer.StoreError`. A read-only Edge store takes
        no lock and reads private copies of the collections it opens, so it keeps working while another
        process writes.
    api_key
        API key of the Qdrant server (default: ``CELLVEC_QDRANT_API_KEY``).
    index
        Default :class:`IndexParams` of collections created without their own.
    search_processes
        For a read-only directory: processes that search one large query batch (at least 2,048 rows), each
        over its own private copy of the collection; ``1`` searches in this process only. Default
        ``CELLVEC_SEARCH_PROCESSES``, else the cores this process may use (at most 4). Ignored for servers
        and ``":memory:"``.

    Returns
    -------
    VectorStore
        The opened store; use it as a context manager or call ``close()``.

    Raises
    ------
    StoreError
        The directory is missing (with ``create=False``), not a cellvec store, or locked by another writer;
        or the server cannot be reached.

    Examples
    --------
    >>> with open_store(":memory:") as store:
    ...     store.create_collection("genes", vectors={"text": 4})
    ...     store.collections()
    ['genes']
    """
    if location is None:
        from indexer._settings import Settings

        settings = Settings()
        location = settings.qdrant_url or settings.store
    loc = os.fspath(location)
    if loc == ":memory:" or loc.startswith(("http://", "https://")):
        from indexer.store._client import ClientStore

        if api_key is None:  # the settings (pydantic-settings) are read only for a server: a directory needs none
            from indexer._settings import Settings

            key = Settings().qdrant_api_key
            api_key = None if key is None else key.get_secret_value()
        return ClientStore(loc, read_only=read_only, api_key=api_key, index=index)
    from indexer.store._edge import EdgeStore

    return EdgeStore(Path(loc), create=create, read_only=read_only, index=index, search_processes=search_processes)
