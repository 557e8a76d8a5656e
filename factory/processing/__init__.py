"""Post-processing of dataset stores with Dask: focal-volume averaging, irregular-grid
interpolation, network-ready preprocessing, augmentation and splits.

The math lives in small pure modules (``focal``, ``interpolate``, ``preprocess``,
``augment``, ``splits``) that a notebook or the streaming predictor can call on plain
arrays; ``description`` types what ``preprocess`` computes (the record a processed store and
a model card hold); ``runner`` and the steps (``sample_steps``: focal averaging and
interpolation; ``network_steps``: preprocessing, augmentation and splits; both reading their
``sources``, all re-exported by ``steps``) turn them into resumable Dask graphs over Zarr stores.
"""
