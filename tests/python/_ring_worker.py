"""What one rank of the multi-GPU ring attention tests runs, started by ``baracuda._launch.spawn``.

A worker joins an NCCL communicator once (the unique id broadcast by the launcher), then for
every case, in the order given (the same on every rank):

1. builds the case's GLOBAL inputs on the CPU from the case's seed (numpy ``randn`` rounded to
   the dtype through torch), identical on every rank;
2. takes its own part of q, k and v with ``baracuda.shard_sequence`` and moves it to its GPU;
3. runs ``baracuda.ring_attention`` into a NaN-poisoned output;
4. sends ``(case id, RankOutcome)`` to the parent, y and LSE as float64 numpy arrays.

Rank ``SINGLE_GPU_RANK`` also runs ``baracuda.flash_attention`` on the whole global sequence
and, for f16 / bf16, the naive same-dtype attention that sets the tolerance; their failures
are reported with the case and do not stop the ring. A failure on the ring path aborts the
communicator and raises: the launcher then ends the run, naming the rank and the case.

The module holds no test and imports torch, cuda.core and ``baracuda.nccl`` only inside the
worker functions, so that collecting the tests works on a machine without them.
"""

import dataclasses
import math
import os
import time
import traceback
import zlib

import baracuda
import numpy as np
from test_flash_gpu import LOW_PRECISION_EPSILON, Case, naive_attention, to_numpy, torch_dtype

# Set in every worker before NCCL init: NVLink multicast (NVLS) stays off on the test machines.
NCCL_ENVIRONMENT = {"NCCL_NVLS_ENABLE": "0"}

# Seconds every ring call waits for its work (and its peers) before it aborts the
# communicator and raises NcclError.
RING_TIMEOUT_S = 120.0

# The rank that also runs single-GPU flash attention (and the naive attention) on the whole
# global sequence.
SINGLE_GPU_RANK = 0

# Dead-peer scenario: the rank that leaves abruptly (os._exit(0), no NCCL or CUDA teardown)
# after the first call, the timeout of the survivor's second call, and how long the survivor
# waits for the peer's process to be gone.
DEAD_PEER_RANK = 1
DEAD_PEER_RING_TIMEOUT_S = 20.0
PEER_GONE_WAIT_S = 120.0


@dataclasses.dataclass(frozen=True)
class RingCase:
    """One ring attention problem; the sequence length is given per rank.

    The global problem is ``[B, H, world_size * seq_len_per_rank, head_dim]`` attention with
    top-left positions; each rank holds the part of the sequence that ``layout`` assigns it.
    """

    element: str = "f32"
    batch_size: int = 2
    num_heads: int = 4
    num_heads_k: int | None = None  # None: as num_heads
    seq_len_per_rank: int = 64
    head_dim: int = 64
    causal: bool = False
    layout: str = "contiguous"
    window: tuple = (None, None)
    softcap: float = 0.0
    scale: float | None = None
    alibi: bool = False  # geometric [H] f32 slopes
    schedule: str = "overlapped"
    preallocated_out: bool = True  # y passed NaN-poisoned as out=; else ring_attention allocates

    @property
    def heads_k(self):
        return self.num_heads if self.num_heads_k is None else self.num_heads_k

    @property
    def problem_id(self):
        """The id of the problem alone: twins that differ only in how they run share it."""
        parts = [
            self.element,
            f"d{self.head_dim}",
            f"b{self.batch_size}h{self.num_heads}"
            + (f"k{self.num_heads_k}" if self.num_heads_k is not None else ""),
            f"s{self.seq_len_per_rank}",
            self.layout,
        ]
        if self.causal:
            parts.append("causal")
        if self.window != (None, None):
            left, right = ("inf" if side is None else side for side in self.window)
            parts.append(f"win{left}-{right}")
        if self.softcap:
            parts.append(f"cap{self.softcap:g}")
        if self.scale is not None:
            parts.append(f"scale{self.scale:g}")
        if self.alibi:
            parts.append("alibi")
        return "-".join(parts)

    @property
    def id(self):
        parts = [self.problem_id]
        if self.schedule != "overlapped":
            parts.append(self.schedule)
        if not self.preallocated_out:
            parts.append("alloc")
        return "-".join(parts)

    @property
    def seed(self):
        """A seed fixed by the problem: the same on every rank, in the parent, and for twins
        that differ only in schedule or output allocation."""
        return zlib.crc32(self.problem_id.encode())

    def global_len(self, world_size):
        return world_size * self.seq_len_per_rank

    def single_gpu_case(self, world_size):
        """The global problem as a ``test_flash_gpu.Case`` (what ``naive_attention`` reads)."""
        length = self.global_len(world_size)
        return Case(
            self.element,
            batch_size=self.batch_size,
            num_heads=self.num_heads,
            num_heads_k=self.num_heads_k,
            query_len=length,
            key_len=length,
            d_k=self.head_dim,
            causal=self.causal,
            window=self.window,
            softcap=self.softcap,
            scale=self.scale,
        )


@dataclasses.dataclass
class GlobalInputs:
    """The whole sequence of one case on the CPU: q, k, v torch tensors in the case's dtype."""

    q: object
    k: object
    v: object
    alibi_slopes: np.ndarray | None  # [H] float32


@dataclasses.dataclass
class RankOutcome:
    """What a rank sends back for one case; every array is float64 numpy."""

    y: np.ndarray  # [B, H, seq_len_per_rank, D], this rank's rows
    lse: np.ndarray  # [B, H, seq_len_per_rank]
    y_dtype: str  # the torch dtype of the y that ring attention wrote
    lse_dtype: str
    flash_y: np.ndarray | None = None  # SINGLE_GPU_RANK: flash attention on the global inputs
    flash_lse: np.ndarray | None = None
    naive_y: np.ndarray | None = None  # SINGLE_GPU_RANK, f16 / bf16: naive same-dtype attention
    single_gpu_error: str | None = None  # SINGLE_GPU_RANK: traceback when flash or naive failed


@dataclasses.dataclass
class DeadPeerReport:
    """What the surviving rank saw when it called ring attention with its peer gone."""

    error_type: str | None  # None: the call returned
    is_nccl_error: bool
    message: str
    elapsed_s: float


def alibi_slopes(num_heads):
    """Geometric ALiBi slopes ``2^(-8 (h + 1) / H)`` as ``[H]`` float32."""
    heads = np.arange(1, num_heads + 1, dtype=np.float64)
    return np.power(2.0, -8.0 * heads / num_heads).astype(np.float32)


def global_inputs(torch, case, world_size):
    """The case's global q, k, v (``randn`` from the case's seed, rounded to its dtype).

    Every rank and the parent get the same values: the draws are numpy float64, and the one
    rounding to the dtype is torch's (round to nearest even, bf16 included).
    """
    rng = np.random.default_rng(case.seed)
    dtype = torch_dtype(torch, case.element)
    length = case.global_len(world_size)

    def randn(heads):
        values = rng.standard_normal((case.batch_size, heads, length, case.head_dim))
        return torch.from_numpy(values).to(dtype)

    q = randn(case.num_heads)
    k = randn(case.heads_k)
    v = randn(case.heads_k)
    slopes = alibi_slopes(case.num_heads) if case.alibi else None
    return GlobalInputs(q, k, v, slopes)


def select_device(rank):
    """Make GPU ``rank`` current for cuda.core (baracuda) and torch; return torch."""
    import torch
    from cuda.core import Device

    Device(rank).set_current()
    torch.cuda.set_device(rank)
    return torch


def device_slopes(torch, inputs, device):
    if inputs.alibi_slopes is None:
        return None
    return torch.from_numpy(inputs.alibi_slopes).to(device)


def ring_call(torch, comm, case, inputs, *, timeout):
    """This rank's part of the case through ``baracuda.ring_attention``: (y, lse) tensors."""
    device = torch.device("cuda", comm.device_id)
    q, k, v = (
        baracuda.shard_sequence(x, comm.world_size, comm.rank, layout=case.layout)
        .contiguous()
        .to(device)
        for x in (inputs.q, inputs.k, inputs.v)
    )
    out = None
    if case.preallocated_out:
        out = torch.full(q.shape, math.nan, dtype=q.dtype, device=device)
    y, lse = baracuda.ring_attention(
        q,
        k,
        v,
        comm,
        causal=case.causal,
        layout=case.layout,
        scale=case.scale,
        window=case.window,
        softcap=case.softcap,
        alibi_slopes=device_slopes(torch, inputs, device),
        schedule=case.schedule,
        out=out,
        timeout=timeout,
        return_lse=True,
    )
    return (out if out is not None else torch.from_dlpack(y)), torch.from_dlpack(lse)


def add_single_gpu(torch, case, inputs, world_size, outcome):
    """Flash attention (and, for f16 / bf16, naive attention) on the whole global sequence."""
    q, k, v = (x.cuda() for x in (inputs.q, inputs.k, inputs.v))
    slopes = device_slopes(torch, inputs, q.device)
    y, lse = baracuda.flash_attention(
        q,
        k,
        v,
        causal=case.causal,
        scale=case.scale,
        window=case.window,
        softcap=case.softcap,
        alibi_slopes=slopes,
        return_lse=True,
    )
    torch.cuda.synchronize()
    outcome.flash_y = to_numpy(torch.from_dlpack(y))
    outcome.flash_lse = to_numpy(torch.from_dlpack(lse))
    if case.element in LOW_PRECISION_EPSILON:
        naive = naive_attention(
            torch, q, k, v, case.single_gpu_case(world_size), alibi_slopes=slopes
        )
        outcome.naive_y = to_numpy(naive)


def run_case(torch, comm, case):
    """One case on this rank; raises on a failure of the ring path."""
    inputs = global_inputs(torch, case, comm.world_size)
    y, lse = ring_call(torch, comm, case, inputs, timeout=RING_TIMEOUT_S)
    outcome = RankOutcome(to_numpy(y), to_numpy(lse), str(y.dtype), str(lse.dtype))
    if comm.rank == SINGLE_GPU_RANK:
        try:
            add_single_gpu(torch, case, inputs, comm.world_size, outcome)
        except Exception:
            outcome.single_gpu_error = traceback.format_exc()
    return outcome


def join_communicator(rank):
    """Device and communicator of one worker: (torch, comm)."""
    torch = select_device(rank.rank)
    return torch, rank.nccl_communicator(device=rank.rank)


def run_worker(rank, cases):
    """Run every case of ``cases`` on one communicator; send ``(case.id, RankOutcome)`` each.

    Returns True once the communicator is destroyed; a failure on the ring path aborts the
    communicator and raises, naming the case.
    """
    torch, comm = join_communicator(rank)
    for case in cases:
        try:
            outcome = run_case(torch, comm, case)
        except Exception as error:
            error.add_note(f"in case {case.id}")
            if not comm.closed:
                comm.abort()
            raise
        rank.send((case.id, outcome))
    comm.destroy()
    return True


def _wait_until_gone(pid, seconds):
    """Whether process ``pid`` is gone (reaped by the launcher) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def run_dead_peer_worker(rank, case):
    """Both ranks run ``case`` once; then one leaves abruptly and the other calls again.

    Rank ``DEAD_PEER_RANK`` leaves with ``os._exit(0)`` after the first call: no NCCL or CUDA
    teardown. The other waits until that process is gone, calls ring attention again with
    ``timeout=DEAD_PEER_RING_TIMEOUT_S`` and returns a ``DeadPeerReport`` (after aborting its
    communicator if the call left it open).
    """
    torch, comm = join_communicator(rank)
    inputs = global_inputs(torch, case, comm.world_size)
    try:
        ring_call(torch, comm, case, inputs, timeout=RING_TIMEOUT_S)
    except Exception:
        comm.abort()
        raise
    pids = rank.gather(os.getpid())
    rank.barrier()
    if rank.rank == DEAD_PEER_RANK:
        os._exit(0)
    if not _wait_until_gone(pids[DEAD_PEER_RANK], PEER_GONE_WAIT_S):
        comm.abort()
        raise RuntimeError(f"rank {DEAD_PEER_RANK} was still there after {PEER_GONE_WAIT_S:g} s")
    start = time.monotonic()
    try:
        ring_call(torch, comm, case, inputs, timeout=DEAD_PEER_RING_TIMEOUT_S)
    except Exception as error:
        report = DeadPeerReport(
            type(error).__name__,
            isinstance(error, baracuda.NcclError),
            str(error),
            time.monotonic() - start,
        )
    else:
        report = DeadPeerReport(None, False, "", time.monotonic() - start)
    if not comm.closed:
        comm.abort()
    return report
