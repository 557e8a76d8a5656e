"""Integrity of a store: metadata against arrays, completeness, and the full verify."""

from __future__ import annotations

import numpy as np

from ..errors import StoreError
from .location import chunk_indices
from .schema import DIGESTS, Damage, digest, ranges

_BATCH_BYTES = 64 * 2**20  # at most this much read in one call by verify


class IntegrityChecks:
    """The checks of :class:`~factory.store.DatasetStore` (a mixin: it uses the store's
    ``path``, ``group``, ``meta``, ``array()``, ``blocks()`` and ``done_mask()``)."""

    def digest_arrays(self) -> list[str]:
        """The sample-chunked data arrays, in the column order of the digest table."""
        names = ["images"]
        names += [f"params/{n}" for n in self.param_names]
        names += [f"diagnostics/{n}" for n in self.diagnostic_names]
        return names

    def _chunked_arrays(self) -> list[str]:
        return [*self.digest_arrays(), *self.root_copies.values(), "done"] + ([DIGESTS] if self.has_digests else [])

    def check_layout(self) -> None:
        """The metadata agrees with the arrays (names, shapes, chunks); StoreError if not."""
        n, c, dims = self.n_samples, self.chunk, self.meta["image_dims"]
        img = self.images
        if img.ndim != len(dims):
            raise StoreError(f"{self.path}: images have {img.ndim} axes but zarr.json names {dims}")
        for name in [*self._chunked_arrays(), "sample", *self.sample_array_names]:
            arr = self.array(name)
            want_chunk = c if name in self._chunked_arrays() else None
            if name == DIGESTS:
                want = (self.n_blocks, len(self.digest_arrays()))
                ok = arr.shape == want and arr.chunks[0] == 1
            else:
                ok = arr.shape[0] == n and (want_chunk is None or arr.chunks[0] == want_chunk)
            if not ok:
                raise StoreError(
                    f"{self.path}: array {name!r} has shape {arr.shape} (chunks {arr.chunks}) but zarr.json "
                    f"says {n} samples in chunks of {c}; the metadata was edited or the store is damaged"
                )
        for d, length in zip(dims[1:], img.shape[1:]):
            if self.array(d).shape != (length,):
                raise StoreError(f"{self.path}: coordinate {d!r} has shape {self.array(d).shape}, images {length}")
        for sub, names in (("params", self.param_names), ("diagnostics", self.diagnostic_names)):
            try:
                stored = sorted(k for k, _ in self.group[sub].arrays())
            except KeyError:
                stored = []
            if stored != sorted(names):
                raise StoreError(f"{self.path}: {sub}/ holds {stored} but zarr.json names {sorted(names)}")

    def _chunk_files(self, name: str) -> set[int]:
        """Indices (along the sample axis) of the chunk files (objects, at a URL) present for
        array ``name`` (the default Zarr v3 key encoding: ``name/c/<i>/0/...``)."""
        return chunk_indices(self.path, name, self.array(name).ndim)

    def _lost_chunks(self, done: np.ndarray | None = None) -> set[int]:
        """Chunks whose data is marked done but one of whose files is gone."""
        done = self.done_mask() if done is None else done
        marked = set(np.flatnonzero(self._per_block(done, "any")).tolist())
        if not marked:
            return set()
        lost: set[int] = set()
        for name in self._chunked_arrays():
            if name != "done":
                lost |= marked - self._chunk_files(name)
        return lost

    def check_complete(self) -> None:
        """Every sample done and every chunk file present; StoreError naming the samples if not."""
        done = self.done_mask()
        if not done.all():
            missing = np.flatnonzero(~done)
            raise StoreError(
                f"{self.path}: {len(missing)} of {self.n_samples} samples not done (samples "
                f"{ranges(missing)}); finish it with --resume, or open it with partial=True to use only done samples"
            )
        for name in self._chunked_arrays():
            have = self._chunk_files(name)
            lost = [k for k in range(len(self.blocks())) if k not in have]
            if lost:
                samples = [i for k in lost for i in range(*self.blocks()[k])]
                raise StoreError(
                    f"{self.path}: array {name!r} lacks chunk files {lost[:6]} (samples {ranges(samples)}); "
                    "the store is damaged: `factory info --verify` lists it, `factory generate --resume` recomputes it"
                )

    def verify(self, images: bool = True) -> list[Damage]:
        """Read every array back: crc32c of every chunk (codec), metadata against the arrays,
        the digest of every chunk against the table written with it (swapped/copied chunks),
        coordinates and per-sample arrays against their recorded digests, ``sample`` = 0..n-1.

        Returns what is wrong with the samples it concerns (empty: the store is complete and
        sound); samples not done are listed too (an incomplete store).  ``images=False`` skips
        reading the image chunks (what every reader checks when it opens a store: the images
        are checked chunk by chunk as they are read).

        Parameters
        ----------
        images : bool, optional
            Read and check the image chunks too (the bulk of the store); False checks
            everything else.

        Returns
        -------
        list of Damage
            One entry per problem: the array, the chunk index (-1: not one chunk), the samples
            ``[start, stop)`` it concerns and the reason.  Empty when the store is sound.
        """
        n = self.n_samples
        try:
            self.check_layout()
        except StoreError as exc:
            return [Damage("zarr.json", -1, (0, n), str(exc).split(": ", 1)[-1])]
        damage: list[Damage] = []
        done = self._read_done(damage)
        if not done.all():
            missing = np.flatnonzero(~done)
            damage.append(Damage("done", -1, (int(missing[0]), int(missing[-1]) + 1),
                                 f"{len(missing)} samples not done ({ranges(missing)}): incomplete store"))
        table = None
        if self.has_digests:
            table = self._read_or_damage(DIGESTS, slice(None), (0, n), damage)
        for col, name in enumerate(self.digest_arrays()):
            files = self._chunk_files(name)
            arr = self.group[name]
            read = self._chunk_reader(arr, files, damage)
            for ci, (s, e) in enumerate(self.blocks()):
                if ci not in files:
                    if done[s:e].any():
                        damage.append(Damage(name, ci, (s, e), "chunk file missing for samples marked done"))
                    continue
                if name == "images" and not images:
                    continue
                values = read(ci)
                if values is None or table is None or not done[s:e].all():
                    continue
                if int(table[ci, col]) != digest(ci, values):
                    damage.append(Damage(name, ci, (s, e), "content does not match its digest "
                                         "(a swapped, copied or altered chunk)"))
        self._verify_copies(done, damage)
        if table is not None and (table[[k for k, (s, e) in enumerate(self.blocks()) if done[s:e].all()]] == 0).any():
            damage.append(Damage(DIGESTS, -1, (0, n), "digest table has empty rows for done chunks"))
        index = self._read_or_damage("sample", slice(None), (0, n), damage)
        if index is not None and not np.array_equal(index, np.arange(n)):
            damage.append(Damage("sample", 0, (0, n), "sample index is not 0..n-1"))
        recorded = self.meta.get("digests", {})
        for name in [*self.meta["image_dims"][1:], *self.sample_array_names]:
            values = self._read_or_damage(name, slice(None), (0, n), damage)
            if values is None:
                continue
            if not np.isfinite(values.astype(np.float64)).all():
                damage.append(Damage(name, 0, (0, n), "holds NaN/Inf"))
            elif name in recorded and recorded[name] != digest(0, values):
                damage.append(Damage(name, 0, (0, n), "values differ from the digest recorded at creation"))
        return damage

    def _verify_copies(self, done: np.ndarray, damage: list) -> None:
        """Each root-level copy of a label holds, chunk by chunk, what the label holds."""
        for name, copy in self.root_copies.items():
            files, src_files = self._chunk_files(copy), self._chunk_files(name)
            src, dst = self.group[name], self.group[copy]
            read_got, read_want = self._chunk_reader(dst, files, damage), self._chunk_reader(src, src_files, [])
            for ci, (s, e) in enumerate(self.blocks()):
                if ci not in files:
                    if done[s:e].any():
                        damage.append(Damage(copy, ci, (s, e), "chunk file missing for samples marked done"))
                    continue
                got = read_got(ci)
                if got is None or not done[s:e].all() or ci not in src_files:
                    continue  # (a damaged or lost source chunk is listed under its own name)
                want = read_want(ci)
                if want is not None and got.tobytes() != want.tobytes():
                    damage.append(Damage(copy, ci, (s, e), f"differs from {name} (the copy for xarray was altered)"))

    def _read_done(self, damage: list) -> np.ndarray:
        """``done``, read chunk by chunk when it cannot be read whole, so ``damage`` names exactly
        the unreadable chunks and their samples; those samples count as done (the other arrays
        are then checked for them)."""
        arr = self.group["done"]
        try:
            return np.asarray(arr[:], dtype=bool)
        except Exception:  # a damaged chunk: found and named below
            pass
        done = np.ones(self.n_samples, dtype=bool)
        for ci, (s, e) in enumerate(self.blocks()):
            values = self._read_or_damage(arr, slice(s, e), (s, e), damage, chunk=ci)
            if values is not None:
                done[s:e] = values
        return done

    def _chunk_reader(self, arr, present: set[int], damage: list):
        """``read(ci)``: the values of chunk ``ci`` of the raw array ``arr`` (None when unreadable,
        recorded in ``damage``), for chunks asked in increasing order.  Neighbouring present
        chunks are read in one call (up to ~64 MiB: zarr fetches them concurrently, one round
        trip on object storage instead of one per chunk); a call that fails is redone chunk by
        chunk, so ``damage`` names exactly the unreadable chunks."""
        blocks = self.blocks()
        per_chunk = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize * self.chunk)
        span = max(1, _BATCH_BYTES // per_chunk)
        held: dict[int, np.ndarray] = {}
        alone: set[int] = set()

        def read(ci: int):
            s, e = blocks[ci]
            if ci not in held and ci not in alone:
                held.clear()
                run = [ci]
                while len(run) < span and run[-1] + 1 in present:
                    run.append(run[-1] + 1)
                lo, hi = s, blocks[run[-1]][1]
                try:
                    values = arr[lo:hi]
                except Exception:  # one of them is damaged: each is read alone below
                    alone.update(run)
                else:
                    held.update({k: values[blocks[k][0] - lo: blocks[k][1] - lo] for k in run})
            if ci in held:
                return held[ci]
            return self._read_or_damage(arr, slice(s, e), (s, e), damage, chunk=ci)

        return read

    def _read_or_damage(self, arr, sel, samples, damage, chunk=0):
        arr = self.group[arr] if isinstance(arr, str) else arr  # raw: collect damage, don't raise
        try:
            return arr[sel]
        except Exception as exc:
            name = arr.path if hasattr(arr, "path") else str(arr)
            damage.append(Damage(name, chunk, samples, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"))
            return None

