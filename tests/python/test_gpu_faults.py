"""GPU fault handling: arguments that would fault on the device are refused before any launch,
an output that cannot be allocated is a CudaError naming its size, and after each of them the
context stays usable (a valid call that follows succeeds and is right)."""

from __future__ import annotations

import baracuda
import numpy as np
import pytest
from baracuda import reference

pytestmark = pytest.mark.gpu

B, H, S, D = 2, 4, 96, 64
ELEMENT_BYTES = 2  # f16


class Interface:
    """A CUDA Array Interface view of `nbytes`-aligned memory at `address` (no ownership)."""

    def __init__(self, address, shape, owner):
        self.owner = owner
        strides = tuple(
            int(np.prod(shape[axis + 1 :])) * ELEMENT_BYTES for axis in range(len(shape))
        )
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": "<f2",
            "data": (address, False),
            "strides": strides,
            "version": 3,
        }


def inputs(torch, seed):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    return [
        torch.randn(B, H, S, D, device="cuda", dtype=torch.float16, generator=generator)
        for _ in range(3)
    ]


def expect_valid_call_succeeds(torch, q, k, v):
    """The context is usable: a valid call runs, synchronises cleanly, matches the reference."""
    y = baracuda.flash_attention(q, k, v, causal=True)
    torch.cuda.synchronize()
    got = torch.from_dlpack(y).float().cpu().numpy()
    expected = reference.attention(*(t.double().cpu().numpy() for t in (q, k, v)), causal=True)[0]
    np.testing.assert_allclose(got, expected, atol=2e-2, rtol=2e-2)


def test_misaligned_and_aliased_arguments_are_refused_before_launch(torch, seed):
    q, k, v = inputs(torch, seed)
    # q one byte past an f16 boundary: a kernel reading it would fault (misaligned address).
    padded = torch.empty(B * H * S * D * ELEMENT_BYTES + 16, device="cuda", dtype=torch.uint8)
    misaligned = Interface(padded.data_ptr() + 1, (B, H, S, D), padded)
    with pytest.raises(baracuda.InvalidProblemError, match="q data is misaligned for f16"):
        baracuda.flash_attention(misaligned, k, v)
    # The output on top of an input: a race between blocks reading q and writing y.
    with pytest.raises(baracuda.InvalidProblemError, match="y and q share memory"):
        baracuda.flash_attention(q, k, v, out=q)
    # A written view that folds onto itself.
    folded = torch.empty(B * H * D, device="cuda", dtype=torch.float16).as_strided(
        (B, H, S, D), (H * D, D, 0, 1)
    )
    with pytest.raises(baracuda.InvalidProblemError, match="y is written"):
        baracuda.flash_attention(q, k, v, out=folded)
    expect_valid_call_succeeds(torch, q, k, v)


def test_output_that_cannot_be_allocated_is_a_cuda_error(torch, seed):
    q, k, v = inputs(torch, seed)
    # Broadcast views (stride 0) of a few elements describe a problem whose y needs 2 TiB.
    batch, heads, queries = 1024, 64, 1 << 18
    huge_q = q[:1, :1, :1].expand(batch, heads, queries, D)
    small_k = k[:1, :1].expand(batch, heads, S, D)
    small_v = v[:1, :1].expand(batch, heads, S, D)
    y_bytes = batch * heads * queries * D * ELEMENT_BYTES
    with pytest.raises(baracuda.CudaError, match=f"allocating {y_bytes} bytes"):
        baracuda.flash_attention(huge_q, small_k, small_v)
    expect_valid_call_succeeds(torch, q, k, v)
