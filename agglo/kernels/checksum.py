"""A fast checksum of an array's bytes, for the on-disk network cache.

``Σ (w_q + 1) · (2q + 1)  mod 2^64`` over the array's little-endian 32-bit words ``w_q``
(the last one zero-padded):
every word counts with an odd (so invertible) weight of its position, so any one changed,
swapped or zeroed word changes the sum. Integer sums wrap exactly, so the parallel sum is
the same whatever the number of threads. Not a cryptographic hash: it detects torn,
truncated or damaged files, not deliberate edits.
"""

import numpy as np

from agglo.kernels.jit import parallel, prange

BLOCK = 1 << 16


@parallel
def _words_sum(words):
    n = words.shape[0]
    n_blocks = (n + BLOCK - 1) // BLOCK
    sums = np.zeros(n_blocks, dtype=np.uint64)
    for b in prange(n_blocks):
        acc = np.uint64(0)
        for q in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            acc += (np.uint64(words[q]) + np.uint64(1)) * (np.uint64(2) * np.uint64(q) + np.uint64(1))
        sums[b] = acc
    total = np.uint64(0)
    for b in range(n_blocks):
        total += sums[b]
    return total


def array_checksum(array: np.ndarray) -> int:
    """The checksum of ``array``'s bytes (C order), with the last 1-3 bytes of a length
    that is not a multiple of 4 zero-padded into one more word."""
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    full = data.shape[0] - data.shape[0] % 4
    if full == data.shape[0]:
        return int(_words_sum(data.view("<u4")))
    tail = np.zeros(4, dtype=np.uint8)
    tail[: data.shape[0] - full] = data[full:]
    words = np.concatenate([data[:full].view("<u4"), tail.view("<u4")])
    return int(_words_sum(words))
