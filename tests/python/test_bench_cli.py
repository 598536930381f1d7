"""CPU tests of the benchmark command line (both targets) and of the flash benchmark.

Where a device would be needed, the GPU, ``torch.cuda`` and the implementations are the fakes
of ``_bench_fakes`` (tensors on the host); a recorded H200 document gives the JSON schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from _bench_fakes import (
    FAKE_GPU,
    FAKE_TORCH,
    FIXED_NOW,
    FakeCuda,
    FakeUnsupportedError,
    cpu_arrays,
    header,
    parse,
    recorded,
)
from baracuda import _bench_common as common
from baracuda import _bench_flash as flash
from baracuda import _bench_ring as ring
from baracuda.__main__ import main, with_default_target

RECORDED = recorded("nvidia-h200-2026-12-02-flash-final-mask")
SMALL = flash.BenchConfig(
    dtypes=("f16",), head_dims=(64,), seqlens=(64, 128), tokens=256, warmup=2, repeats=5
)
TINY = flash.BenchConfig(
    dtypes=("f16",), head_dims=(64,), seqlens=(16,), tokens=32, variants=flash.VARIANTS, warmup=1
)
RING_OPTIONS = "--chunks --dtypes --heads --heads-k --head-dim --world-size --warmup --repeats"
RING_OPTIONS += " --schedules --cases --no-peers --quick --out --max-seconds"
FLASH_OPTIONS = "--dtypes --head-dims --seqlens --causal --variants --tokens --layout --warmup"
FLASH_OPTIONS += " --repeats --out --quick --no-peers"


def fake(name, cuda, *, ms=1.0, peer=False, fail=None, seen=None):
    """An implementation whose calls take ``ms`` on ``cuda``'s clock; ``fail(case, call)`` gives
    an exception to raise or None; ``seen`` collects ``(case, sets, index)`` of each call."""

    def bind(case, sets):
        calls = itertools.count()

        def call(index):
            error = fail(case, next(calls)) if fail else None
            if error is not None:
                raise error
            (seen if seen is not None else []).append((case, sets, index))
            cuda.now_ms += ms

        return call

    unsupported = lambda exc: isinstance(exc, FakeUnsupportedError)  # noqa: E731
    return flash.Implementation(name, name, bind, peer, unsupported)


def run_fake(config, implementations, cuda, *, plan_info=None):
    """Run a grid on the fakes; return the document and the progress text."""
    document = flash.build_document(config, header(flash.SCHEMA), implementations)
    progress = io.StringIO()
    flash.run_benchmark(
        config,
        document,
        implementations,
        arrays=cpu_arrays(),
        cuda=cuda,
        l2_cache_bytes=FAKE_GPU.l2_cache_bytes,
        plan_info=plan_info,
        progress=progress,
    )
    return document, progress.getvalue()


def keys(value):
    """The keys of a JSON value, nested (a list of objects by its first)."""
    if isinstance(value, dict):
        return {key: keys(item) for key, item in value.items()}
    has_objects = isinstance(value, list) and value and isinstance(value[0], dict)
    return [keys(value[0])] if has_objects else None


@pytest.mark.parametrize(
    ("argv", "status", "listed"),
    [
        ("--help", 0, ["bench"]),
        ("bench --help", 0, ["ring", "flash"]),
        ("bench flash --help", 0, FLASH_OPTIONS.split()),
        ("bench ring --help", 0, RING_OPTIONS.split()),
        ("", 2, ["COMMAND"]),
    ],
)
def test_help_and_usage(capsys, argv, status, listed):
    with pytest.raises(SystemExit) as exit_info:
        main(argv.split())
    out = "".join(capsys.readouterr())
    assert exit_info.value.code == status
    assert [name for name in listed if name not in out] == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("bench", "bench flash"),
        ("bench --quick", "bench flash --quick"),
        ("bench ring --quick", "bench ring --quick"),
        ("bench --help", "bench --help"),
    ],
)
def test_bench_target_defaults_to_flash(argv, expected):
    assert with_default_target(argv.split()) == expected.split()


RESOLVERS = {"flash": flash.resolve_config, "ring": ring.resolve_ring_config}
RUNS = {"flash": flash.run_flash, "ring": ring.run_ring}
DEFAULTS = {"flash": flash.DEFAULTS, "ring": ring.DEFAULTS}


def resolve(target, argv):
    """Parse ``bench [ring] <argv>`` (flash as the default target) and resolve it."""
    args = parse("bench", *(["ring"] if target == "ring" else []), *argv.split())
    assert (args.target, args.run) == (target, RUNS[target])
    return RESOLVERS[target](args)


FLASH_QUICK = dict(dtypes=("bf16",), head_dims=(64, 128), seqlens=(1024, 4096))
FLASH_QUICK.update(warmup=3, repeats=20)
FLASH_ALL = dict(dtypes=("bf16", "f64"), head_dims=(64, 256), seqlens=(1024, 2048), causal=(True,))
FLASH_ALL.update(variants=("alibi", "gqa"), tokens=8192, layout="bhsd", warmup=0, repeats=5)
FLASH_ALL.update(peers=False, out=Path("x/y.json"))
RING_QUICK = dict(chunks=(1024, 8192), warmup=2, repeats=10)
RING_ALL = dict(chunks=(1024, 32768), dtypes=("f16", "bf16"), heads=16, heads_k=4, head_dim=64)
RING_ALL.update(world_size=2, cases=("causal-zigzag", "noncausal"), schedules=("serial",))
RING_ALL.update(warmup=0, repeats=7, max_seconds=120.5, out=Path("x/ring.json"), peers=False)


@pytest.mark.parametrize(
    ("target", "argv", "expected"),
    [
        ("flash", "", {}),
        (
            "flash",
            "--dtypes bf16,f16,f32 --head-dims 64,128,256 --seqlens 512,1k,2k,4k,8k,16k"
            " --tokens 16k --causal both --variants plain --layout bshd --warmup 10 --repeats 100",
            {},
        ),
        ("flash", "--causal no", {"causal": (False,)}),
        ("flash", "--quick", FLASH_QUICK),
        (
            "flash",
            "--quick --dtypes f16 --repeats 7",
            {**FLASH_QUICK, "dtypes": ("f16",), "repeats": 7},
        ),
        (
            "flash",
            "--dtypes bf16,f64 --head-dims 64,256 --seqlens 1k,2048 --causal yes --tokens 8k"
            " --layout bhsd --variants alibi,gqa,alibi --warmup 0 --repeats 5 --out x/y.json"
            " --no-peers",
            FLASH_ALL,
        ),
        ("ring", "", {"warmup": None, "repeats": None, "peers": True}),
        (
            "ring",
            "--chunks 1k,2k,4k,8k,16k,32k --dtypes bf16 --heads 32 --heads-k 8 --head-dim 128"
            " --cases noncausal,causal-contiguous,causal-zigzag --schedules overlapped,serial",
            {},
        ),
        ("ring", "--quick", RING_QUICK),
        (
            "ring",
            "--quick --repeats 3 --chunks 2k",
            {**RING_QUICK, "chunks": (2048,), "repeats": 3},
        ),
        (
            "ring",
            "--chunks 1001 --cases noncausal,causal-contiguous",
            {"chunks": (1001,), "cases": ("noncausal", "causal-contiguous")},
        ),
        (
            "ring",
            "--chunks 1k,32k --dtypes f16,bf16 --heads 16 --heads-k 4 --head-dim 64 --world-size 2"
            " --cases causal-zigzag,noncausal,causal-zigzag --schedules serial --warmup 0"
            " --repeats 7 --max-seconds 120.5 --out x/ring.json --no-peers",
            RING_ALL,
        ),
    ],
)
def test_options_defaults_and_the_quick_preset_resolve(target, argv, expected):
    assert resolve(target, argv) == dataclasses.replace(DEFAULTS[target], **expected)


EXPECTED = "(expected one of"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("--dtypes bf16,f8", f"unknown dtype 'f8' {EXPECTED} bf16, f16, f32, f64)"),
        ("--dtypes fp16", "unknown dtype 'fp16'"),
        ("--seqlens 0", "expected a positive integer such as 4096 or 4k (got '0')"),
        ("--seqlens 1x", "(got '1x')"),
        ("--head-dims ''", "(got '')"),
        ("--causal maybe", "invalid choice: 'maybe'"),
        ("--warmup -1", "expected a non-negative integer (got '-1')"),
        ("--repeats 0", "positive integer"),
        ("--layout sbhd", "invalid choice: 'sbhd'"),
        ("--variants plain,bias", f"unknown variant 'bias' {EXPECTED} plain, alibi, softcap"),
        ("--variants ''", "unknown variant ''"),
        ("ring --chunks 1k,,2k", "positive integer"),
        ("ring --dtypes fp8", "unknown dtype 'fp8'"),
        ("ring --cases noncausal,zigzag", f"unknown name 'zigzag' {EXPECTED} noncausal, causal-"),
        ("ring --schedules parallel", "unknown name 'parallel'"),
        ("ring --heads 0", "positive integer"),
        ("ring --world-size 0", "positive integer"),
        ("ring --warmup -1", "non-negative integer"),
        ("ring --repeats 0", "positive integer"),
        ("ring --max-seconds 0", "expected a positive number of seconds (got '0')"),
        ("ring --max-seconds soon", "positive number of seconds"),
        ("ring --max-seconds nan", "positive number of seconds"),
    ],
)
def test_invalid_option_is_a_usage_error(capsys, argv, message):
    *target, option, value = argv.split()
    with pytest.raises(SystemExit) as exit_info:
        parse("bench", *target, option, value.strip("'"))
    err = capsys.readouterr().err
    assert (exit_info.value.code, option in err, message in err) == (2, True, True), err


WHY = {
    "flash": "it allocates the inputs and times them",
    "ring": "torch.multiprocessing starts the ranks, torch.distributed joins them",
}


@pytest.mark.parametrize("target", ["flash", "ring"])
@pytest.mark.parametrize("gpu", [False, True], ids=["no-gpu", "no-torch"])
def test_without_a_gpu_or_torch_one_line_and_no_file(monkeypatch, capsys, tmp_path, target, gpu):
    absent = common.GpuInfo(False, reason="probe says")
    monkeypatch.setattr(common, "probe_gpu", lambda: FAKE_GPU if gpu else absent)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", target, "--quick"]) == (1 if gpu else 0)
    program = "baracuda bench" + (" ring" if target == "ring" else "")
    line = (
        f"needs torch ({WHY[target]})"
        if gpu
        else "no CUDA GPU is present (probe says); nothing to time"
    )
    assert capsys.readouterr() == ("", f"{program}: {line}.\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", [["--quick"], ["ring"]], ids=["flash", "ring"])
def test_no_visible_device_end_to_end(tmp_path, target):
    completed = subprocess.run(
        [sys.executable, "-m", "baracuda", "bench", *target],
        cwd=tmp_path,
        capture_output=True,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr and "no CUDA GPU is present" in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_probe_and_header_come_from_the_driver_and_cuda_core(monkeypatch):
    from baracuda import _cuda

    monkeypatch.setattr(_cuda, "_device_absence", lambda: "cuInit returned NO_DEVICE")
    assert common.probe_gpu() == common.GpuInfo(False, reason="cuInit returned NO_DEVICE")
    device = types.SimpleNamespace(
        name="NVIDIA H200",
        compute_capability=types.SimpleNamespace(major=9, minor=0),
        properties=types.SimpleNamespace(l2_cache_size=60 * common.MIBI),
    )
    devices = {"__new__": lambda cls, ordinal: device, "get_all_devices": lambda: (device,) * 2}
    system = types.SimpleNamespace(
        get_user_mode_driver_version=lambda: (13, 0),
        get_kernel_mode_driver_version=lambda: (580, 159, 4),
    )
    core = types.SimpleNamespace(Device=type("Device", (), devices), system=system)
    monkeypatch.setattr(_cuda, "_device_absence", lambda: None)
    monkeypatch.setitem(sys.modules, "cuda.core", core)
    gpu = common.probe_gpu()
    assert gpu == common.GpuInfo(True, "", "NVIDIA H200", "9.0", 60 * common.MIBI, 2, "13.0")
    document = header(flash.SCHEMA, baracuda=types.SimpleNamespace(__version__="0.1.0"))
    assert keys(document) == keys({key: RECORDED[key] for key in document})
    assert (document["date"], document["complete"]) == ("2025-01-02", False)
    software = [document["software"][key] for key in ("nvidia_driver", "baracuda", "cudnn")]
    assert software == ["580.159.04", "0.1.0", 91000]
    path = common.default_output_path("NVIDIA H100 80GB HBM3", FIXED_NOW.date(), target="ring")
    assert path == Path("benchmarks/results/nvidia-h100-80gb-hbm3-2025-01-02-ring.json")


def test_grid_keeps_tokens_and_model_width_and_the_variants_of_a_problem_together():
    cases = flash.case_grid(flash.BenchConfig())
    assert len(cases) == 3 * 3 * 6 * 2
    sizes = {(case.batch * case.seqlen, case.heads * case.head_dim) for case in cases}
    assert sizes == {(16 * 1024, 2048)}
    assert [case.label() for case in cases[:3]] == [
        "bf16 D=64 H=32 B=32 S=512 full",
        "bf16 D=64 H=32 B=32 S=512 causal",
        "bf16 D=64 H=32 B=16 S=1024 full",
    ]
    cases = flash.case_grid(dataclasses.replace(SMALL, variants=("plain", "window", "gqa")))
    assert [(case.heads_k, case.window, case.label()) for case in cases[:4]] == [
        (32, None, "f16 D=64 H=32 B=4 S=64 full"),
        (32, (1024, 1024), "f16 D=64 H=32 B=4 S=64 full window"),
        (4, None, "f16 D=64 H=32 Hk=4 B=4 S=64 full gqa"),
        (32, None, "f16 D=64 H=32 B=4 S=64 causal"),
    ]
    assert cases[4].window == (1024, 0)  # causal: no key after the query


@pytest.mark.parametrize(("heads", "heads_k"), [(32, 4), (16, 2), (8, 1), (4, 1), (20, 2), (17, 1)])
def test_gqa_kv_heads_divide_the_query_heads(heads, heads_k):
    case = flash.Case(dtype="bf16", head_dim=64, heads=heads, batch=1, seqlen=8, causal=False)
    assert (dataclasses.replace(case, variant="gqa").heads_k, case.heads_k) == (heads_k, heads)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen", [512, 1024, 1025, 3000])
def test_flops_count_the_pairs_inside_the_window(causal, seqlen):
    case = flash.Case("bf16", 64, 2, 3, seqlen, causal, variant="window")
    plain = flash.flops(dataclasses.replace(case, variant="plain"))
    assert plain == 4 * 3 * 2 * 64 * seqlen**2 // (2 if causal else 1)
    query, key = np.indices((seqlen, seqlen))
    left, right = case.window
    outside = np.count_nonzero(query - key > left)
    outside += 0 if causal else np.count_nonzero(key - query > right)
    assert flash.flops(case) == plain - 4 * 3 * 2 * 64 * outside
    assert (flash.flops(case) == plain) == (seqlen <= 1024 + 1)
    for variant in ("alibi", "softcap", "mask", "gqa"):
        assert flash.flops(dataclasses.replace(case, variant=variant)) == plain


def test_summary_statistics():
    assert common.summarize([5.0, 1.0, 4.0, 2.0, 3.0], 2**39) == pytest.approx(
        {"status": "ok", "median_ms": 3.0, "p10_ms": 1.4, "p90_ms": 4.6, "min_ms": 1.0, "runs": 5}
        | {"tflops": 2**39 / 3.0e-3 / 1e12}
    )


@pytest.mark.parametrize(
    ("seqlen", "l2_bytes", "expected"),
    [(512, 50 * common.MIBI, 13), (512, 0, 17), (16384, 50 * common.MIBI, 3), (16, 0, 64)],
)
def test_input_sets_exceed_twice_the_l2(seqlen, l2_bytes, expected):
    case = flash.Case(dtype="bf16", head_dim=64, heads=32, batch=1, seqlen=seqlen, causal=False)
    set_bytes = 4 * 32 * seqlen * 64 * 2
    footprint = flash.input_footprint(case, l2_bytes)
    assert footprint == flash.InputFootprint(expected, False, expected * set_bytes)
    assert expected == 64 or expected * set_bytes > 2 * (l2_bytes or 64 * common.MIBI)


def test_score_inputs_are_shared_only_when_larger_than_the_l2_span():
    # bf16 D=128 S=4k with an f32 [B, H, S, S] mask (4 GiB), 16k tokens, and the peers' copy.
    case = flash.Case("bf16", 128, 16, 4, 4096, False, variant="mask")
    qkv_bytes, mask_bytes = 4 * 4 * 16 * 4096 * 128 * 2, 4 * common.GIBI
    footprint = flash.input_footprint(case, 60 * common.MIBI, peers=True)
    assert footprint == flash.InputFootprint(3, True, 3 * qkv_bytes + mask_bytes * 3 // 2)
    assert flash.input_footprint(case, 60 * common.MIBI).total_bytes == 3 * qkv_bytes + mask_bytes
    large = dataclasses.replace(case, head_dim=64, heads=32, batch=1, seqlen=16384)
    assert flash.input_footprint(large, 0, peers=True).total_bytes > 32 * common.GIBI
    small = flash.Case("f16", 64, 2, 1, 64, False, variant="alibi")
    set_bytes = 4 * 2 * 64 * 64 * 2 + 2 * 4 + 2 * 64 * 64 * 2
    count = common.sets_to_exceed_l2(set_bytes, FAKE_GPU.l2_cache_bytes)
    footprint = flash.input_footprint(small, FAKE_GPU.l2_cache_bytes, peers=True)
    assert footprint == flash.InputFootprint(count, False, count * set_bytes)
    arrays = cpu_arrays()
    sets = flash.make_inputs(small, 3, arrays, peers=True)
    assert sets[0].attn_mask is not sets[1].attn_mask
    shared = flash.make_inputs(small, 3, arrays, peers=True, shared_score_inputs=True)
    assert shared[0].attn_mask is shared[2].attn_mask and shared[0].q is not shared[2].q


@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_inputs_are_random_distinct_sets_in_the_layout(layout):
    torch = pytest.importorskip("torch")
    case = flash.Case("f32", 8, 4, 2, 16, False)
    sets = flash.make_inputs(case, 3, cpu_arrays(), layout=layout)
    for tensor in (sets[0].q, sets[0].k, sets[0].v, sets[0].out):
        assert tuple(tensor.shape) == (2, 4, 16, 8)
        assert tensor.stride(1) == (8 if layout == "bshd" else 16 * 8)
    assert torch.count_nonzero(sets[0].q) == sets[0].q.numel()
    assert not torch.equal(sets[0].q, sets[0].k) and not torch.equal(sets[0].q, sets[1].q)
    (gqa,) = flash.make_inputs(dataclasses.replace(case, heads=16, variant="gqa"), 1, cpu_arrays())
    expected = [(2, heads, 16, 8) for heads in (16, 2, 2, 16)]
    assert [tuple(tensor.shape) for tensor in (gqa.q, gqa.k, gqa.v, gqa.out)] == expected
    assert (gqa.alibi_slopes, gqa.mask, gqa.attn_mask) == (None, None, None)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("variant", "dtype"), [("alibi", "f16"), ("mask", "f16"), ("mask", "f32")])
def test_score_inputs_are_f32_for_baracuda_and_in_the_input_dtype_for_the_peers(
    variant, dtype, causal
):
    """Their values: :func:`test_torch_peers_pose_the_problem_baracuda_gets`."""
    case, arrays = flash.Case(dtype, 64, 8, 2, 6, causal, variant=variant), cpu_arrays()
    name, shape = ("alibi_slopes", (8,)) if variant == "alibi" else ("mask", (2, 8, 6, 6))
    inputs = flash.score_inputs(case, arrays, peers=True)
    ours, peers = inputs[name], inputs["attn_mask"]
    assert (tuple(ours.shape), ours.dtype) == (shape, arrays.dtype("f32"))
    peer_shape = (1 if variant == "alibi" else 2, 8, 6, 6)
    assert (tuple(peers.shape), peers.dtype) == (peer_shape, arrays.dtype(dtype))
    assert (peers is ours) == (variant == "mask" and dtype == "f32" and not causal)
    assert bool(peers.isneginf().any()) == causal
    assert set(flash.score_inputs(case, arrays, peers=False)) == {name}
    if variant == "alibi":
        np.testing.assert_array_equal(ours.numpy(), 2.0 ** -np.arange(1, 9))
    else:
        assert ours.isfinite().all() and ours.count_nonzero() == ours.numel()
    softcap = dataclasses.replace(case, variant="softcap")
    assert flash.score_inputs(softcap, arrays, peers=True) == {}


@pytest.mark.parametrize(("warmup", "warmup_indices"), [(5, [0, 1, 2, 0, 1]), (1, [0, 1, 2])])
def test_time_calls_rotates_sets_and_times_each_call(warmup, warmup_indices):
    cuda, calls = FakeCuda(), []

    def fn(index):
        calls.append(index)
        cuda.now_ms += 1.0 + index

    samples = common.time_calls(fn, 3, cuda=cuda, warmup=warmup, repeats=4)
    assert calls == [*warmup_indices, 0, 1, 2, 0]
    assert (samples, cuda.synchronizations) == ([1.0, 2.0, 3.0, 1.0], 2)


def refuse_with_warnings(case, call):
    for _ in range(2):
        warnings.warn("flash needs f16 or bf16", stacklevel=1)
    return RuntimeError("No available kernel. Aborting execution.")


def refuse_in_bind(case, sets):
    raise flash.CaseUnsupportedError("cannot say")


def at(index, error):
    """``fail`` of :func:`fake`: ``error`` at call ``index``."""
    return lambda case, call: error if call == index else None


TORCH = {"is_unsupported": common.is_torch_unsupported}
NO_KERNEL = "RuntimeError: No available kernel. Aborting execution."
OUT_OF_MEMORY = type("OutOfMemoryError", (RuntimeError,), {})


@pytest.mark.parametrize(
    ("fail", "change", "expected"),
    [
        (at(0, FakeUnsupportedError("D")), {}, ("unsupported", "FakeUnsupportedError: D")),
        (at(0, ValueError("bad")), {}, ("error", "ValueError: bad")),
        (at(2, FakeUnsupportedError("late")), {}, ("error", "FakeUnsupportedError: late")),
        (None, {"bind": refuse_in_bind}, ("unsupported", "CaseUnsupportedError: cannot say")),
        (refuse_with_warnings, TORCH, ("unsupported", NO_KERNEL, ["flash needs f16 or bf16"])),
        (at(0, RuntimeError("CUDA error: x")), TORCH, ("error", "RuntimeError: CUDA error: x")),
        (at(0, OUT_OF_MEMORY("OOM")), TORCH, ("error", "OutOfMemoryError: OOM")),
    ],
)
def test_measure_classifies_failures(fail, change, expected):
    cuda = FakeCuda()
    implementation = dataclasses.replace(fake("x", cuda, fail=fail), **change)
    case = flash.Case(dtype="f16", head_dim=64, heads=2, batch=1, seqlen=8, causal=False)
    result = flash.measure(implementation, case, [None] * 3, cuda=cuda, warmup=1, repeats=2)
    assert result == dict(zip(("status", "error", "warnings"), expected, strict=False))


def test_run_writes_the_recorded_schema_and_table(tmp_path):
    cuda = FakeCuda()
    refuse = lambda case, call: FakeUnsupportedError() if case.causal else None  # noqa: E731
    implementations = [
        fake("baracuda", cuda, ms=2.0),
        fake("torch_flash", cuda, ms=3.0, peer=True),
        fake("torch_cudnn", cuda, ms=1.0, peer=True, fail=refuse),
    ]
    plan = {"backend": "hopper", "sku": "fake"}
    document, progress = run_fake(SMALL, implementations, cuda, plan_info=lambda case: plan)
    loaded = json.loads(common.write_json(tmp_path / "new" / "r.json", document).read_text())
    empty = {"grid": {}, "cases": []}
    assert keys({**loaded, **empty}) == keys({**RECORDED, **empty})
    first = RECORDED["cases"][0]
    assert keys({**loaded["cases"][0], "results": {}}) == keys({**first, "results": {}})
    assert set(loaded["cases"][0]["results"]["baracuda"]) == set(first["results"]["baracuda"])
    full, causal = loaded["cases"][:2]
    assert (loaded["timing"]["warmup"], len(loaded["cases"]), loaded["complete"]) == (2, 4, True)
    assert (full["batch"], full["heads"], full["baracuda_plan"]) == (4, 32, plan)
    assert full["results"]["baracuda"]["tflops"] == pytest.approx(full["flops"] / 2e-3 / 1e12)
    assert (full["best_peer"], full["speedup_vs_best_peer"]) == ("torch_cudnn", 0.5)
    refused = {"status": "unsupported", "error": "FakeUnsupportedError: "}
    assert causal["results"]["torch_cudnn"] == refused
    assert (causal["best_peer"], causal["speedup_vs_best_peer"]) == ("torch_flash", 1.5)
    assert "[4/4] f16 D=64 H=32 B=2 S=128 causal: baracuda 2.000 ms" in progress

    table = flash.format_table(loaded).splitlines()
    columns = " ".join(f"{name} ms TFLOP/s" for name in ("baracuda", "torch_flash", "torch_cudnn"))
    assert table[0].split() == f"dtype D H B S causal {columns} speedup".split()
    assert set(table[1]) == {"-", " "} and len(table) == 2 + len(loaded["cases"])
    assert table[2].split() == "f16 64 32 4 64 no 2.000 0.1 3.000 0.0 1.000 0.1 0.50x".split()
    assert "unsupported" in table[3] and table[3].endswith("1.50x")
    assert len({len(line) for line in table}) == 1  # right-aligned columns
    recorded_table = flash.format_table(RECORDED).splitlines()
    assert "torch efficient ms" in recorded_table[0] and "variant" in recorded_table[0]
    assert recorded_table[2].split()[-1] == f"{first['speedup_vs_best_peer']:.2f}x"


def test_the_recorded_grid_and_timing_come_back():
    grid, timing = RECORDED["grid"], RECORDED["timing"]
    axes = {key: tuple(grid[key]) for key in ("dtypes", "head_dims", "seqlens", "variants")}
    config = flash.BenchConfig(**axes, warmup=timing["warmup"], repeats=timing["repeats"])
    implementations = [
        flash.Implementation(i["name"], i["label"], None, i["peer"], None)
        for i in RECORDED["implementations"]
    ]
    document = flash.build_document(config, header(flash.SCHEMA), implementations)
    for key in ("schema", "timing", "grid", "implementations"):
        assert document[key] == RECORDED[key], key


def test_interrupt_keeps_measured_cases():
    cuda = FakeCuda()
    stop = lambda case, call: KeyboardInterrupt() if case.seqlen == 128 else None  # noqa: E731
    document, progress = run_fake(SMALL, [fake("baracuda", cuda, fail=stop)], cuda)
    assert document["complete"] is False
    assert [case["seqlen"] for case in document["cases"]] == [64, 64]
    assert "interrupted after 2 of 4 cases" in progress


def test_case_over_the_input_budget_is_skipped_without_allocating():
    cuda, seen = FakeCuda(), []
    config = dataclasses.replace(
        TINY, seqlens=(256,), tokens=512, variants=("plain", "mask"), causal=(False,)
    )
    plain_case, mask_case = flash.case_grid(config)
    budget = flash.input_footprint(plain_case, FAKE_GPU.l2_cache_bytes).total_bytes
    mask_footprint = flash.input_footprint(mask_case, FAKE_GPU.l2_cache_bytes)
    assert mask_footprint.shared_score_inputs and mask_footprint.total_bytes > budget
    config = dataclasses.replace(config, input_budget_bytes=budget)
    document, progress = run_fake(config, [fake("baracuda", cuda, seen=seen)], cuda)
    plain, mask = document["cases"]
    assert plain["results"]["baracuda"]["status"] == "ok"
    reason = "inputs would take 0.04 GiB, over the 0.02 GiB input budget"
    assert mask["results"]["baracuda"] == {"status": "skipped", "error": reason}
    peer = (mask["best_peer"], mask["speedup_vs_best_peer"])
    assert (mask["input_sets"], *peer) == (mask_footprint.set_count, None, None)
    assert {case.variant for case, _, _ in seen} == {"plain"}
    assert len(seen[0][1]) == plain["input_sets"] == 3
    assert "[2/2] f16 D=64 H=32 B=2 S=256 full mask: baracuda skipped" in progress
    printed = io.StringIO()
    flash.print_table(document, printed)
    last = f"baracuda skipped on f16 D=64 H=32 B=2 S=256 full mask: {reason}"
    assert printed.getvalue().splitlines()[-1] == last


def fake_torch(monkeypatch, cuda, calls, *, version="2.5.1"):
    """Install a ``torch`` whose SDPA records ``(backend, q, k, v, kwargs)`` and whose flash
    backend refuses an ``attn_mask`` as PyTorch does; return it."""
    backends = types.SimpleNamespace(
        FLASH_ATTENTION="flash", CUDNN_ATTENTION="cudnn", EFFICIENT_ATTENTION="efficient"
    )
    entered = []

    @contextlib.contextmanager
    def sdpa_kernel(backend):
        entered.append(backend)
        yield

    def sdpa(q, k, v, **kwargs):
        if entered[-1] == "flash" and kwargs["attn_mask"] is not None:
            warnings.warn("Flash attention does not support an attn_mask", stacklevel=1)
            raise RuntimeError("No available kernel. Aborting execution.")
        calls.append((entered[-1], q, k, v, kwargs))
        cuda.now_ms += 1.0

    attention = types.SimpleNamespace(SDPBackend=backends, sdpa_kernel=sdpa_kernel)
    functional = types.SimpleNamespace(scaled_dot_product_attention=sdpa)
    monkeypatch.setitem(sys.modules, "torch.nn.attention", attention)
    nn = types.SimpleNamespace(functional=functional, attention=attention)
    return types.SimpleNamespace(__version__=version, nn=nn)


def fake_baracuda(cuda, calls):
    """A ``baracuda`` whose ``flash_attention`` records ``(q, k, v, kwargs)``."""

    def flash_attention(q, k, v, **kwargs):
        calls.append((q, k, v, kwargs))
        cuda.now_ms += 1.0

    return types.SimpleNamespace(
        flash_attention=flash_attention, UnsupportedError=FakeUnsupportedError
    )


def test_baracuda_gets_each_variants_arguments(monkeypatch):
    cuda, calls, arguments = FakeCuda(), [], {}
    implementation = flash.baracuda_implementation(fake_baracuda(cuda, calls))
    causal_grid = flash.case_grid(dataclasses.replace(TINY, causal=(True,)))
    for case in causal_grid:
        (inputs,) = flash.make_inputs(case, 1, cpu_arrays())
        implementation.bind(case, [inputs])(0)
        q, k, v, kwargs = calls[-1]
        assert (q, k, v, kwargs.pop("out")) == (inputs.q, inputs.k, inputs.v, inputs.out)
        arguments[case.variant] = (k.shape[1], kwargs, inputs)
    plain = {"causal": True, "alibi_slopes": None, "mask": None}
    assert arguments["plain"][:2] == (32, plain) and arguments["gqa"][:2] == (4, plain)
    assert arguments["softcap"][:2] == (32, {**plain, "softcap": 30.0})
    assert arguments["window"][:2] == (32, {**plain, "window": (1024, 0)})
    alibi, mask = arguments["alibi"][2], arguments["mask"][2]
    assert arguments["alibi"][1] == {**plain, "alibi_slopes": alibi.alibi_slopes}
    assert arguments["mask"][1] == {**plain, "mask": mask.mask}
    assert (alibi.attn_mask, mask.attn_mask) == (None, None)
    assert tuple(mask.mask.shape) == (2, 32, 16, 16)

    monkeypatch.setattr(common, "flash_plan_info", lambda baracuda, descriptor: descriptor)
    descriptor = types.SimpleNamespace(FlashSdpaDescriptor=lambda *extents, **options: options)
    plain = {"is_causal": True, "element": "f16"}
    plain.update(window_size_left=None, window_size_right=None)
    expected = {
        "softcap": {**plain, "softcap": 30.0},
        "window": {**plain, "window_size_left": 1024, "window_size_right": 0},
    }
    for case in causal_grid:
        assert flash.baracuda_plan_info(descriptor, case) == expected.get(case.variant, plain)


def run_with_torch_peers(monkeypatch, config, *, version="2.5.1"):
    """Run ``config`` with a fake baracuda and the torch peers over a fake torch."""
    cuda, torch_calls = FakeCuda(), []
    torch = fake_torch(monkeypatch, cuda, torch_calls, version=version)
    implementations = [
        flash.baracuda_implementation(fake_baracuda(cuda, [])),
        *flash.torch_sdpa_implementations(torch, variants=config.variants),
    ]
    document, progress = run_fake(config, implementations, cuda)
    return document, progress, torch_calls


def statuses(record):
    return {name: result["status"] for name, result in record["results"].items()}


def test_peers_run_or_are_unsupported_per_variant(monkeypatch):
    document, _, torch_calls = run_with_torch_peers(monkeypatch, TINY)
    names = [item["name"] for item in document["implementations"]]
    assert names == ["baracuda", "torch_flash", "torch_cudnn", "torch_efficient"]
    assert document["grid"]["variants"] == list(flash.VARIANTS)
    assert set(document["grid"]["variant_settings"]) == {*flash.VARIANTS[1:], "causal_attn_mask"}
    records = {(case["variant"], case["causal"]): case for case in document["cases"]}
    assert len(records) == len(document["cases"]) == 12
    every = dict.fromkeys(names, "ok")
    for causal in (False, True):
        assert statuses(records["plain", causal]) == statuses(records["gqa", causal]) == every
        for variant in ("alibi", "mask"):
            assert statuses(records[variant, causal]) == {**every, "torch_flash": "unsupported"}
            flash_result = records[variant, causal]["results"]["torch_flash"]
            assert flash_result["warnings"] == ["Flash attention does not support an attn_mask"]
        for variant, reason in (("softcap", "softcap"), ("window", "sliding window")):
            record = records[variant, causal]
            assert statuses(record) == {"baracuda": "ok", **dict.fromkeys(names[1:], "unsupported")}
            error = record["results"]["torch_cudnn"]["error"]
            assert error == f"CaseUnsupportedError: torch SDPA has no {reason}"
            assert (record["best_peer"], record["speedup_vs_best_peer"]) == (None, None)
    assert records["gqa", True]["heads_k"] == 4 and "heads_k" not in records["plain", True]

    options = {}
    for backend, q, k, _, kwargs in torch_calls:
        variant = "gqa" if k.shape[1] != q.shape[1] else None
        if kwargs["attn_mask"] is not None:
            variant = "alibi" if kwargs["attn_mask"].shape[0] == 1 else "mask"
        options.setdefault((variant, backend), []).append(kwargs)
    plain_calls = options[None, "cudnn"]
    assert {kwargs["is_causal"] for kwargs in plain_calls} == {False, True}
    assert all(set(kwargs) == {"attn_mask", "is_causal"} for kwargs in plain_calls)
    assert all(kwargs["enable_gqa"] for kwargs in options["gqa", "efficient"])
    for variant in ("alibi", "mask"):  # refused by flash; causal folded into the attn_mask
        assert (variant, "flash") not in options
        calls = options[variant, "cudnn"]
        assert {kwargs["is_causal"] for kwargs in calls} == {False}
        assert {bool(kwargs["attn_mask"].isneginf().any()) for kwargs in calls} == {False, True}


def test_gqa_peers_are_unsupported_before_enable_gqa(monkeypatch):
    config = dataclasses.replace(TINY, variants=("plain", "gqa"), causal=(False,))
    document, _, _ = run_with_torch_peers(monkeypatch, config, version="2.4.1+cu121")
    plain, gqa = document["cases"]
    names = [item["name"] for item in document["implementations"]]
    assert names == ["baracuda", "torch_flash", "torch_cudnn"]
    assert statuses(plain) == dict.fromkeys(names, "ok")
    assert statuses(gqa) == {"baracuda": "ok", **dict.fromkeys(names[1:], "unsupported")}
    error = "CaseUnsupportedError: this torch SDPA has no enable_gqa (PyTorch 2.5+)"
    assert gqa["results"]["torch_flash"]["error"] == error


def test_table_has_a_variant_column_with_variants(monkeypatch):
    config = dataclasses.replace(TINY, variants=("plain", "softcap"), causal=(True,))
    document, progress, torch_calls = run_with_torch_peers(monkeypatch, config)
    table = flash.format_table(document).splitlines()
    columns = "baracuda ms TFLOP/s torch flash ms TFLOP/s torch cudnn ms TFLOP/s speedup"
    assert table[0].split() == f"dtype D H B S causal variant {columns}".split()
    assert table[2].split()[6:] == "plain 1.000 0.0 1.000 0.0 1.000 0.0 1.00x".split()
    assert table[3].split()[6:] == "softcap 1.000 0.0 unsupported unsupported -".split()
    assert "[2/2] f16 D=64 H=32 B=2 S=16 causal softcap: baracuda 1.000 ms" in progress
    printed = io.StringIO()
    flash.print_table(document, printed)
    assert printed.getvalue().splitlines() == table  # unsupported is not a failure to list
    assert {kwargs["attn_mask"] for *_, kwargs in torch_calls} == {None}


@pytest.mark.parametrize(("dtype", "tolerance"), [("f32", 1e-5), ("bf16", 3e-2)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", ["plain", "alibi", "mask", "gqa"])
def test_torch_peers_pose_the_problem_baracuda_gets(dtype, tolerance, causal, variant):
    """PyTorch's host SDPA on the peers' inputs against the float64 reference on baracuda's."""
    torch = pytest.importorskip("torch")
    from baracuda import reference

    case = flash.Case(dtype, 16, 16, 2, 24, causal, variant)
    (inputs,) = flash.make_inputs(case, 1, cpu_arrays(), peers=True)
    (peer, *_) = flash.torch_sdpa_implementations(torch, variants=(variant,))
    got = peer.bind(case, [inputs])(0)  # outside the backend's context: the host kernels

    def host(tensor):
        return None if tensor is None else tensor.float().numpy()

    arrays = [host(tensor) for tensor in (inputs.q, inputs.k, inputs.v)]
    scores = {"alibi_slopes": host(inputs.alibi_slopes), "mask": host(inputs.mask)}
    expected, _ = reference.attention(*arrays, causal=causal, **scores, **flash.score_options(case))
    assert (inputs.k.shape[1], got.dtype) == (case.heads_k, inputs.q.dtype)
    np.testing.assert_allclose(host(got), expected, rtol=tolerance, atol=tolerance)


def test_command_on_a_fake_gpu_prints_the_table_and_writes_json(monkeypatch, capsys, tmp_path):
    cuda, arrays = FakeCuda(), cpu_arrays()
    torch = types.SimpleNamespace(**{**vars(FAKE_TORCH), "cuda": cuda})
    monkeypatch.setattr(common, "probe_gpu", lambda: FAKE_GPU)
    monkeypatch.setattr(common, "import_torch", lambda program, why: torch)
    monkeypatch.setattr(common, "TorchArrays", lambda torch: arrays)
    monkeypatch.setattr(flash, "baracuda_implementation", lambda baracuda: fake("baracuda", cuda))
    monkeypatch.setattr(flash, "baracuda_plan_info", lambda baracuda, case: {"sku": "fake"})
    out = tmp_path / "flash.json"
    argv = "bench --dtypes f32 --head-dims 64 --seqlens 64,128 --tokens 256 --variants plain,gqa"
    argv += f" --causal yes --repeats 3 --no-peers --out {out}"
    assert main(argv.split()) == 0
    stdout, stderr = capsys.readouterr()
    document = json.loads(out.read_text())
    table = flash.format_table(document).splitlines()
    assert stdout.splitlines() == [*table, f"results written to {out}"]
    assert [case["variant"] for case in document["cases"]] == ["plain", "gqa"] * 2
    assert "speedup" not in stdout and document["complete"]
    assert (document["software"]["torch"], document["timing"]["repeats"]) == ("0.0-fake", 3)
    assert stderr.startswith(f"baracuda bench: 4 cases on {FAKE_GPU.name}\n[1/4] f32 D=64")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "argv",
    [
        "--dtypes f16 --head-dims 64 --seqlens 512 --causal yes --tokens 1k",
        "--dtypes bf16 --head-dims 128 --seqlens 2k --tokens 4k --variants "
        + ",".join(flash.VARIANTS),
    ],
    ids=["plain", "variants"],
)
def test_bench_smoke_on_gpu(tmp_path, capsys, argv):
    out = tmp_path / "results" / "smoke.json"
    assert main(["bench", *argv.split(), "--warmup", "2", "--repeats", "5", "--out", str(out)]) == 0
    assert f"results written to {out}" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["complete"] is True
    for case in document["cases"]:
        results = case["results"]
        ours = results["baracuda"]
        assert ours["status"] == "ok", (case["variant"], ours)
        assert 0 < ours["min_ms"] <= ours["median_ms"] <= ours["p90_ms"]
        peers = {results[name]["status"] for name in results if name != "baracuda"}
        if case["variant"] in ("softcap", "window"):
            assert peers == {"unsupported"}
        elif case["variant"] in ("alibi", "mask"):
            assert results["torch_flash"]["status"] == "unsupported"
            assert results["torch_efficient"]["status"] == "ok"
        else:
            assert results["torch_flash"]["status"] == "ok"
            assert results["torch_cudnn"]["status"] in ("ok", "unsupported")
