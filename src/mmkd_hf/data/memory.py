"""Memory and threads of data loading: recycled batch buffers, glibc's malloc thresholds, one thread per worker."""

from __future__ import annotations

import math
import os
import sys
import threading

import torch

__all__ = ["batch_buffer", "keep_freed_memory", "dataloader_worker_init", "configure_worker_once"]


class _StoragePool:
    """Recycles the storages of batch buffers in the main process, so a new batch touches no fresh pages.

    A 16 x 3 x 224 x 224 float batch of 4 is 38 MB: freshly ``mmap``-ed memory pays a page fault per 4 KiB
    (~16 ms for such a batch here, more than the copy itself). A storage is handed out again only when
    nothing else references it (its use count is 1, the pool's own reference): a batch the caller still
    holds is never overwritten. At most ``max_buffers`` storages, ``max_bytes`` in all, are kept; tensors
    under ``min_bytes`` are plain allocations.
    """

    def __init__(self, max_buffers: int = 6, max_bytes: int = 512 << 20, min_bytes: int = 1 << 20):
        self.max_buffers = max_buffers
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._storages: list[torch.UntypedStorage] = []
        self._lock = threading.Lock()
        self._use_count = getattr(torch._C, "_storage_Use_Count", None)

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (uninitialised) on a recycled or new storage."""
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if nbytes < self.min_bytes or self._use_count is None:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            storage = None
            for candidate in self._storages:
                if candidate.nbytes() == nbytes and self._use_count(candidate._cdata) == 1:
                    storage = candidate
                    break
            if storage is None:
                storage = torch.UntypedStorage(nbytes)
                kept = sum(s.nbytes() for s in self._storages)
                if len(self._storages) < self.max_buffers and kept + nbytes <= self.max_bytes:
                    self._storages.append(storage)
            return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


_BATCH_POOL = _StoragePool()


def batch_buffer(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised contiguous tensor for a whole batch.

    Inside a ``DataLoader`` worker it lives in shared memory (as ``default_collate`` does), so sending the
    batch to the main process copies nothing; in the main process it comes from a pool of recycled
    storages (:class:`_StoragePool`).
    """
    if torch.utils.data.get_worker_info() is not None:
        numel = math.prod(shape)
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
        return torch.empty(0, dtype=dtype).set_(storage._untyped_storage, 0, shape)
    return _BATCH_POOL.tensor(tuple(shape), dtype)


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc's malloc keep freed clip-sized blocks for reuse instead of returning them to the OS.

    Every item allocates several multi-MB tensors (a 16 x 3 x 224 x 224 float clip is 9.6 MB); with
    glibc's defaults such blocks are often ``mmap``-ed and unmapped again, and every reuse pays page
    faults (measured: a few ms per clip, 10-20 % of the item time). Raising ``M_MMAP_THRESHOLD`` (max 32 MiB)
    and ``M_TRIM_THRESHOLD`` keeps them in the heap. Affects the calling process only; a no-op returning
    False where glibc's ``mallopt`` is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)) and mallopt(m_trim_threshold, int(trim_threshold)))


_CONFIGURED_WORKER_PID: int | None = None


def configure_worker_once() -> None:
    """Inside a ``DataLoader`` worker, apply :func:`dataloader_worker_init` once per process, so every loader
    (the Trainer's too, which takes no ``worker_init_fn`` from us) gets one compute thread per worker."""
    global _CONFIGURED_WORKER_PID
    if _CONFIGURED_WORKER_PID == os.getpid():
        return
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    dataloader_worker_init(info.id)
    _CONFIGURED_WORKER_PID = os.getpid()


def dataloader_worker_init(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=dataloader_worker_init)``: one compute thread per worker process, and
    freed clip buffers kept for reuse (:func:`keep_freed_memory`).

    With ``num_workers`` workers on a machine with few cores, intra-op threads inside each worker
    (torch, OpenCV) oversubscribe the CPU; decoding and augmentation of one item are fast enough on
    one thread and the workers provide the parallelism.
    """
    del worker_id
    torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    keep_freed_memory()
