"""Streaming prediction on live detector frames (``factory predict stream``).

``protocol`` decodes messages safely (no pickle, sizes checked before allocating), ``sources``
reads ZeroMQ endpoints (karabo-bridge or the simple multipart protocol) or replays stores and
image folders, ``sinks`` writes results to a Zarr store / a ZeroMQ PUB socket / a PNG, and
``pipeline`` ties them together with bounded queues, batching and model replicas on Ray.
"""
