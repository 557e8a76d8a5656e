"""The dataset store: one Zarr v3 group per dataset.

``DatasetStore`` (create, open, write blocks, read, verify) lives in :mod:`.dataset`; the
schema (names, codecs, the :class:`Split` codes, digests) in :mod:`.schema`; the integrity
checks in :mod:`.integrity`; digest-checked reading in :mod:`.checked`; the CF attributes in
:mod:`.cf`; the xarray view in :mod:`.xarray_view`; NetCDF/CXI export in :mod:`.export`;
where a store lives (a local folder or an object-storage URL) in :mod:`.location`.
"""

from .checked import CheckedArray
from .creation import MAX_SAMPLES, check_memory_for
from .dataset import DatasetStore, lineage_entry
from .location import (StoreLike, StoreLocation, StoreURL, check_disjoint_stores, check_new_store, is_url,
                       store_exists, store_location)
from .schema import ATTR, DIGESTS, SCHEMA_VERSION, SPLIT_NAMES, Damage, Split, code_version, consolidate
from .xarray_view import open_dataset

__all__ = ["ATTR", "DIGESTS", "MAX_SAMPLES", "SCHEMA_VERSION", "SPLIT_NAMES", "CheckedArray", "Damage", "DatasetStore", "Split",
           "StoreLike", "StoreLocation", "StoreURL", "check_disjoint_stores", "check_memory_for", "check_new_store", "code_version",
           "consolidate", "is_url", "lineage_entry", "open_dataset", "store_exists", "store_location"]
