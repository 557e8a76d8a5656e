"""The application layer: the ``factory`` command line and the quickstart.

The only layer that sees everything (physics, data, compute, learning and serving); every
command is a thin wrapper over one library function a notebook can call too.
"""
