"""Helpers shared by the store backends: names, keys, validation, errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import quote, unquote

import numpy as np

from indexer._errors import StoreError
from indexer.store._protocol import SearchResult, Where

logger = logging.getLogger(__name__)

#: Prefix of every collection cellvec creates on a Qdrant server, so a shared server is not polluted.
CLIENT_PREFIX = "cellvec__"

_RESERVED = frozenset({"meta", "blobs"})  # the client backend keeps cellvec__meta, cellvec__blobs
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")

# --------------------------------------------------------------------------------------------------
# Helpers shared by the backends
# --------------------------------------------------------------------------------------------------


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise :class:`StoreError`."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or name.startswith(CLIENT_PREFIX):
        msg = (
            f"invalid collection name {name!r}: use letters, digits, '_', '-' and '.', starting with a "
            f"letter or digit, at most 200 characters, not starting with {CLIENT_PREFIX!r}"
        )
        raise StoreError(msg)
    if name in _RESERVED:
        msg = f"collection name {name!r} is reserved for cellvec's own data; pick another name"
        raise StoreError(msg)
    return name


def check_key(key: str, what: str = "meta key") -> str:
    """Return ``key`` if it is a usable meta/blob key, else raise :class:`StoreError`."""
    if not isinstance(key, str) or not key or len(key) > 200:
        msg = f"invalid {what} {key!r}: expected a non-empty string of at most 200 characters"
        raise StoreError(msg)
    return key


def encode_key(key: str) -> str:
    """Map a meta/blob key (which may contain ``/``) to a safe file name, reversibly."""
    return quote(key, safe="-_").replace(".", "%2E")


def decode_key(filename: str) -> str:
    """Invert :func:`encode_key`."""
    return unquote(filename)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_ids(ids: Sequence[str]) -> list[str]:
    """Return ids in canonical UUID form; raise :class:`StoreError` naming the first id that is not a UUID."""
    if isinstance(ids, str):
        msg = f"ids must be a sequence of UUID strings, got the single string {ids!r}"
        raise StoreError(msg)
    out: list[str] = []
    canonical = _CANONICAL_UUID.fullmatch
    for i in ids:
        if isinstance(i, str) and canonical(i):  # already canonical (cellvec's own ids): no UUID object
            out.append(i)
            continue
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError:
            msg = (
                f"point id {i!r} is not a UUID: Qdrant accepts UUIDs only; derive one with "
                "uuid.uuid5(namespace, key) and keep the original key in the payload"
            )
            raise StoreError(msg) from None
    return out


def point_int(point_id: object) -> int:
    """Return a hit's point id (a ``UUID``, its text, or an integer id) as a 128-bit integer."""
    if isinstance(point_id, uuid.UUID):
        return point_id.int
    if isinstance(point_id, int):
        return point_id
    return uuid.UUID(str(point_id)).int

def check_vectors(
    name: str, vectors: Mapping[str, np.ndarray], dims: Mapping[str, int], n: int
) -> dict[str, np.ndarray]:
    """Validate vectors for an upsert into collection ``name``; return them as C-contiguous float32.

    Every named vector of the collection must be given, as an ``(n, dim)`` array of finite values.
    """
    unknown = sorted(set(vectors) - set(dims))
    if unknown:
        msg = f"collection {name!r} has no vector named {unknown[0]!r}; it has {sorted(dims)}"
        raise StoreError(msg)
    out: dict[str, np.ndarray] = {}
    for vname, dim in dims.items():
        if vname not in vectors:
            msg = f"upsert into {name!r} is missing vector {vname!r}; give every one of {sorted(dims)}"
            raise StoreError(msg)
        arr = np.ascontiguousarray(vectors[vname], dtype=np.float32)
        if arr.ndim != 2 or arr.shape != (n, dim):
            msg = (
                f"vector {vname!r} of collection {name!r} has shape {arr.shape}; "
                f"expected ({n}, {dim}) (one row per id)"
            )
            raise StoreError(msg)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
            msg = f"vector {vname!r} row {bad} for collection {name!r} holds NaN or infinity; fix the input"
            raise StoreError(msg)
        out[vname] = arr
    return out


def check_query_vectors(name: str, vectors: np.ndarray, using: str, dims: Mapping[str, int]) -> np.ndarray:
    """Validate a query matrix against vector ``using`` of collection ``name``; return it as float32 2-d."""
    if using not in dims:
        msg = f"collection {name!r} has no vector named {using!r}; it has {sorted(dims)}"
        raise StoreError(msg)
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dims[using]:
        msg = (
            f"query vectors for {name!r}/{using!r} have shape {np.shape(vectors)}; "
            f"expected (n, {dims[using]})"
        )
        raise StoreError(msg)
    if not np.isfinite(arr).all():
        msg = f"query vectors for {name!r} hold NaN or infinity; fix the input"
        raise StoreError(msg)
    return np.ascontiguousarray(arr)


def check_payloads(payloads: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """Check there is one payload mapping per id; return them as plain dicts."""
    if len(payloads) != n:
        msg = f"got {len(payloads)} payloads for {n} ids; give one payload (possibly empty) per id"
        raise StoreError(msg)
    return [dict(p) for p in payloads]


Condition = tuple[str, Literal["value", "any"], Any]


def where_conditions(where: Where | None) -> list[Condition] | None:
    """Normalise a :data:`Where` into ``(field, "value"|"any", value)`` conditions.

    Returns ``None`` when the filter can match nothing (a field compared with an empty list).
    """
    if not where:
        return []
    out: list[Condition] = []
    for field, value in where.items():
        if isinstance(value, bool | np.bool_):
            # qdrant-edge-py 0.9.0 converts MatchValue(True) to the integer 1, which matches no JSON
            # boolean: refuse rather than silently match nothing (on every backend, to keep them alike).
            msg = (
                f"where[{field!r}] = {value!r}: filtering on a boolean is not supported by Qdrant Edge; "
                "store the flag as 0/1 or as a keyword such as 'yes'/'no' and filter on that"
            )
            raise StoreError(msg)
        if isinstance(value, str | int | np.integer):
            out.append((field, "value", value.item() if isinstance(value, np.generic) else value))
        elif isinstance(value, Sequence | np.ndarray):
            values = [v.item() if isinstance(v, np.generic) else v for v in value]
            if not values:
                return None
            if not (all(type(v) is str for v in values) or all(type(v) is int for v in values)):
                msg = f"where[{field!r}] must be a list of strings or a list of integers, got {values[:5]!r}"
                raise StoreError(msg)
            out.append((field, "any", values))
        else:
            msg = f"where[{field!r}] must be a string, an integer or a list of them, got {value!r}"
            raise StoreError(msg)
    return out


def empty_result(n_queries: int, limit: int) -> SearchResult:
    """Return a result with no hits for ``n_queries`` queries."""
    return SearchResult(
        id_ints=[[] for _ in range(n_queries)],
        scores=np.full((n_queries, limit), -np.inf, dtype=np.float32),
        payloads=[[] for _ in range(n_queries)],
    )


def read_only_error(location: str, what: str) -> StoreError:
    """Return the error raised by a write on a read-only store."""
    msg = f"cannot {what}: store '{location}' was opened read-only; open it with read_only=False"
    return StoreError(msg)


def no_collection_error(location: str, name: str, existing: Sequence[str]) -> StoreError:
    """Return the error raised when collection ``name`` does not exist."""
    msg = f"store '{location}' has no collection {name!r}; it has {sorted(existing)}"
    return StoreError(msg)


def is_enospc(exc: BaseException) -> bool:
    """Return whether ``exc`` means the disk is full."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(exc).lower()


def enospc_error(path: str | os.PathLike[str]) -> StoreError:
    """Return the error raised when the disk fills up while writing ``path``."""
    msg = (
        f"no space left on device while writing {os.fspath(path)}; free space and rerun "
        "(points already written are kept)"
    )
    return StoreError(msg)


@contextmanager
def os_errors(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into a one-line :class:`StoreError`."""
    try:
        yield
    except StoreError:
        raise
    except OSError as e:
        if is_enospc(e):
            raise enospc_error(path) from e
        msg = f"cannot {what} '{os.fspath(path)}': {e.strerror or e}"
        raise StoreError(msg) from e


def dumps_meta(key: str, value: Mapping[str, Any]) -> str:
    """Serialise a meta value to JSON, with a clear error for values JSON cannot hold."""
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        msg = f"meta value for {key!r} is not JSON-serialisable ({e}); store plain dicts, lists, str, numbers"
        raise StoreError(msg) from e


def pad_scores(rows: Sequence[Sequence[float]], limit: int) -> np.ndarray:
    """Stack per-query score lists into a ``(n, limit)`` float32 array padded with ``-inf``."""
    out = np.full((len(rows), limit), -np.inf, dtype=np.float32)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = r
    return out
