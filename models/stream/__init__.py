"""Streaming prediction on live detector frames (``factory predict stream``).

``protocol`` decodes messages safely (no pickle, sizes checked before allocating), ``detectors``
knows the facility detectors' layouts and assembles their modules (EXtra-geom), ``sources``
reads ZeroMQ endpoints (karabo-bridge or the simple multipart protocol) or replays stores and
image folders, ``sinks`` writes results to a Zarr store / a karabo-bridge server / a msgpack
PUB socket (schema factory.predictions/1) / a PNG, and ``pipeline`` ties them together with
bounded queues, batching and model replicas on Ray (``options``: how it batches, queues and
stops; ``frame_model``: the model each batch runs; ``accounting``: the counts, the bounded
queue, a batch's results and the verdict).
"""
