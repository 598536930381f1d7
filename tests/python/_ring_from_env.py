"""A ring attention run as a user starts it with torchrun: ``Communicator.from_env``.

    python -m torch.distributed.run --nproc-per-node 2 tests/python/_ring_from_env.py

Every rank builds the same global inputs, runs its zigzag part and saves y and LSE in the
working folder; rank 0 gathers the parts, compares them with the float64 reference and prints
one line, ``ring from_env ok ...``.
"""

import os
import time

import baracuda
import numpy as np
import torch
from baracuda import reference

BATCH, HEADS, HEADS_K, PER_RANK, HEAD_DIM = 1, 4, 2, 64, 64
TOLERANCE = 1e-5  # f32, relative to the largest output (docs/ARCHITECTURE.md, Tests)
GATHER_SECONDS = 60


def main():
    comm = baracuda.nccl.Communicator.from_env(timeout=120)
    torch.cuda.set_device(comm.device_id)
    world_size, rank = comm.world_size, comm.rank
    generator = torch.Generator().manual_seed(0)
    length = world_size * PER_RANK
    q = torch.randn(BATCH, HEADS, length, HEAD_DIM, generator=generator)
    k = torch.randn(BATCH, HEADS_K, length, HEAD_DIM, generator=generator)
    v = torch.randn(BATCH, HEADS_K, length, HEAD_DIM, generator=generator)

    def part(x):
        return baracuda.shard_sequence(x, world_size, rank, layout="zigzag").cuda()

    stream = torch.cuda.current_stream()
    y, lse = baracuda.ring_attention(
        part(q),
        part(k),
        part(v),
        comm,
        causal=True,
        layout="zigzag",
        stream=stream,
        timeout=120,
        return_lse=True,
    )
    result = np.concatenate(
        [torch.from_dlpack(y).cpu().numpy().ravel(), torch.from_dlpack(lse).cpu().numpy().ravel()]
    )
    # Written whole, then renamed, so that rank 0 never reads a partial file.
    np.save(f"ring_from_env_rank{rank}.partial.npy", result)
    os.replace(f"ring_from_env_rank{rank}.partial.npy", f"ring_from_env_rank{rank}.npy")
    comm.destroy()
    if rank != 0:
        return
    paths = [f"ring_from_env_rank{r}.npy" for r in range(world_size)]
    deadline = time.monotonic() + GATHER_SECONDS
    while not all(os.path.exists(path) for path in paths) and time.monotonic() < deadline:
        time.sleep(0.1)
    y_size = BATCH * HEADS * PER_RANK * HEAD_DIM
    parts = [np.load(path) for path in paths]
    gathered_y = baracuda.gather_sequence(
        [p[:y_size].reshape(BATCH, HEADS, PER_RANK, HEAD_DIM) for p in parts], layout="zigzag"
    )
    gathered_lse = baracuda.gather_sequence(
        [p[y_size:].reshape(BATCH, HEADS, PER_RANK) for p in parts], layout="zigzag"
    )
    ref_y, ref_lse = reference.attention(q.numpy(), k.numpy(), v.numpy(), causal=True)
    largest = float(np.abs(ref_y).max())
    y_error = float(np.abs(gathered_y - ref_y).max())
    lse_error = float(np.abs(gathered_lse - ref_lse).max())
    assert y_error <= TOLERANCE * largest, f"y error {y_error:.3e}"
    assert lse_error <= TOLERANCE * (1 + float(np.abs(ref_lse).max())), f"lse error {lse_error}"
    print(
        f"ring from_env ok world_size={world_size} y_error={y_error:.2e} lse_error={lse_error:.2e}",
        flush=True,
    )


if __name__ == "__main__":
    main()
