"""Vector Search's shard sizes and the index machines that serve them, as data.

An index is split into shards of one size, chosen when the index is created
(``shard_size`` of ``create_tree_ah_index``; the SDK's default is
SHARD_SIZE_MEDIUM); each shard is served by its own node, and a machine type
serves only some sizes: ``e2-standard-2``, the cheapest, serves SHARD_SIZE_SMALL
only. So an index created with the SDK's default can't be deployed on it.

Source: Vertex AI Vector Search, "Manage indexes" > "Index size" (the shard sizes
and the table of machine types per shard size),
https://cloud.google.com/vertex-ai/docs/vector-search/create-manage-index#index-size
(read 2024; the storage-optimized tier's SHARD_SIZE_SO_DYNAMIC is not used here).
"""
from __future__ import annotations

from typing import Dict, List, Optional

GIB = 1 << 30
# shard size -> how much of the index one shard holds (bytes), smallest first
SHARD_BYTES: Dict[str, int] = {"SHARD_SIZE_SMALL": 2 * GIB, "SHARD_SIZE_MEDIUM": 20 * GIB,
                               "SHARD_SIZE_LARGE": 50 * GIB}
# index machine type -> the shard sizes it serves
MACHINE_SHARDS: Dict[str, tuple] = {
    "e2-standard-2": ("SHARD_SIZE_SMALL",),
    "e2-standard-16": ("SHARD_SIZE_SMALL", "SHARD_SIZE_MEDIUM"),
    "e2-highmem-16": ("SHARD_SIZE_SMALL", "SHARD_SIZE_MEDIUM", "SHARD_SIZE_LARGE"),
    "n1-standard-16": ("SHARD_SIZE_SMALL", "SHARD_SIZE_MEDIUM"),
    "n1-standard-32": ("SHARD_SIZE_SMALL", "SHARD_SIZE_MEDIUM", "SHARD_SIZE_LARGE"),
    "n2d-standard-32": ("SHARD_SIZE_SMALL", "SHARD_SIZE_MEDIUM", "SHARD_SIZE_LARGE"),
}
FLOAT_BYTES = 4  # the index stores each dimension as a float32


def index_bytes(count: int, dimensions: int) -> int:
    """The vectors' size: ``count`` x ``dimensions`` float32 values."""
    return count * dimensions * FLOAT_BYTES


def machines_for(shard_size: str) -> List[str]:
    """The index machine types that serve ``shard_size``."""
    return [m for m, sizes in MACHINE_SHARDS.items() if shard_size in sizes]


def problem(machine: str, shard_size: Optional[str]) -> Optional[str]:
    """Why ``machine`` can't serve an index of ``shard_size`` (None: the default), or None."""
    if shard_size is not None and shard_size not in SHARD_BYTES:
        return (f"shard_size {shard_size!r} is not a Vector Search shard size: one of "
                f"{', '.join(SHARD_BYTES)} (or leave it unset: chosen from the catalog's size)")
    if machine not in MACHINE_SHARDS:
        return (f"index_machine_type {machine!r} does not serve Vector Search indexes: one of "
                f"{', '.join(MACHINE_SHARDS)}")
    if shard_size is not None and shard_size not in MACHINE_SHARDS[machine]:
        return (f"index_machine_type {machine} serves {', '.join(MACHINE_SHARDS[machine])} "
                f"only, not {shard_size}: use {' or '.join(machines_for(shard_size)[:3])}, or "
                "another shard_size")
    return None


def choose(machine: str, shard_size: Optional[str], count: int, dimensions: int) -> str:
    """The shard size to create the index with: ``shard_size`` if set, else the smallest the
    machine serves that holds the whole index in one shard; an index larger than every size
    the machine serves gets the largest of them (Vertex AI splits it over several shards,
    one node each).

    Raises:
      ValueError: the machine can't serve ``shard_size`` (:func:`problem`).
    """
    wrong = problem(machine, shard_size)
    if wrong:
        raise ValueError(f"vertex.vector_search: {wrong}")
    if shard_size is not None:
        return shard_size
    served = MACHINE_SHARDS[machine]
    size = index_bytes(count, dimensions)
    fits = [s for s in served if SHARD_BYTES[s] >= size]
    return fits[0] if fits else served[-1]
