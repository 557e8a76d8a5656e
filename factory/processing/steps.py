"""The processing steps: each reads one or more stores and writes a new store with lineage.

Every step is a library function (a notebook can call it) that builds its output store and a
block function, then hands them to :func:`runner.run_blocks`, that is to the block runner
generation uses too (:func:`factory.compute.fill_missing_blocks`).  ``**run`` chooses where:
``executor=`` any executor (local, Ray, Dask; the output bytes are the same), else Dask's
local threads (``workers``) or a dask.distributed ``address``; ``progress`` shows a bar.
Block functions are module-level callables (picklable, for Ray and Dask workers) that read
only what their chunk needs.  Stores are local paths or URLs (``s3://...``, see
:mod:`factory.store.location`); block functions carry them as strings and each worker opens them.

The steps live in :mod:`.sample_steps` (focal averaging, interpolation) and
:mod:`.network_steps` (preprocessing, augmentation, splits), the source stores in
:mod:`.sources`; this module re-exports them.
"""

from __future__ import annotations

from .network_steps import (AugmentBlock, PreprocessBlock, augment_store, global_kmax, preprocess_store, read_split,
                            split_store, write_split)
from .runner import StepReport
from .sample_steps import FocalBlock, InterpBlock, focal_average_store, interpolate_store
from .sources import Sources, read_images

__all__ = ["AugmentBlock", "FocalBlock", "InterpBlock", "PreprocessBlock", "Sources", "StepReport", "augment_store",
           "focal_average_store", "global_kmax", "interpolate_store", "preprocess_store", "read_images", "read_split",
           "split_store", "write_split"]
