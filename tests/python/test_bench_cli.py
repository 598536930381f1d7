"""CPU tests of the benchmark command line, ``python -m baracuda bench [flash]``.

Where a device would be needed, the GPU probe, the CUDA events and the arrays are the fakes
of ``_bench_fakes``; the recorded H200 results give the JSON schema the run must keep.
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
    FIXED_NOW,
    FakeClock,
    FakeTimer,
    NumpyArrays,
    TorchCpuArrays,
    parse,
)
from baracuda import _bench_common as common
from baracuda import _bench_flash as flash
from baracuda.__main__ import main, with_default_target

NO_GPU_TEXT = "no CUDA GPU is present"
RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"
RECORDED = json.loads((RESULTS / "nvidia-h200-2026-12-01-flash-hopper-v3.json").read_text())
SMALL = flash.BenchConfig(
    dtypes=("f16",), head_dims=(64,), seqlens=(64, 128), tokens=256, warmup=2, repeats=5
)
CASE = flash.Case(dtype="f16", head_dim=64, heads=2, batch=1, seqlen=8, causal=False)


class FakeUnsupportedError(Exception):
    pass


def fake(name, clock, *, ms=1.0, peer=False, fail=None, seen=None):
    """An implementation whose calls take ``ms`` on the fake clock; ``fail(case, call)`` gives
    an exception to raise or None, ``seen`` collects ``(case, sets, index)`` of each call."""

    def bind(case, sets):
        calls = itertools.count()

        def call(index):
            error = fail(case, next(calls)) if fail else None
            if error is not None:
                raise error
            (seen if seen is not None else []).append((case, sets, index))
            clock.now_ms += ms

        return call

    return flash.Implementation(
        name=name,
        label=name,
        bind=bind,
        is_peer=peer,
        is_unsupported=lambda exc: isinstance(exc, FakeUnsupportedError),
    )


def run_fake(config, implementations, clock, *, arrays=None, plan_info=None, software=None):
    """Run a grid on the fakes; return the document and the progress text."""
    document = flash.build_document(
        config,
        FAKE_GPU,
        software=software or {"baracuda": "test"},
        timer_method=FakeTimer.method,
        arrays_name=NumpyArrays.name,
        implementations=implementations,
        now=FIXED_NOW,
    )
    progress = io.StringIO()
    flash.run_benchmark(
        config,
        document,
        implementations,
        arrays=arrays or NumpyArrays(),
        timer=FakeTimer(clock),
        l2_cache_bytes=FAKE_GPU.l2_cache_bytes,
        plan_info=plan_info,
        progress=progress,
    )
    return document, progress.getvalue()


@pytest.mark.parametrize(
    ("argv", "status", "listed"),
    [
        (["--help"], 0, "bench"),
        (["bench", "--help"], 0, "ring"),
        ([], 2, "COMMAND"),
    ],
)
def test_help_and_usage(capsys, argv, status, listed):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == status
    assert listed in "".join(capsys.readouterr())


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


QUICK = {"dtypes": ("bf16",), "head_dims": (64, 128), "seqlens": (1024, 4096), "warmup": 3}
EVERY_OPTION = [
    "--dtypes",
    "bf16,f64",
    "--head-dims",
    "64,256",
    "--seqlens",
    "1k,2048",
    "--causal",
    "yes",
    "--tokens",
    "8k",
    "--layout",
    "bhsd",
    "--variants",
    "alibi,gqa,alibi",
    "--warmup",
    "0",
    "--repeats",
    "5",
    "--out",
    "x/y.json",
    "--no-peers",
]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [],
            flash.BenchConfig(
                dtypes=("bf16", "f16", "f32"),
                head_dims=(64, 128, 256),
                seqlens=(512, 1024, 2048, 4096, 8192, 16384),
                causal=(False, True),
                variants=("plain",),
                tokens=16384,
                layout="bshd",
                warmup=10,
                repeats=100,
                peers=True,
            ),
        ),
        (["--quick"], flash.BenchConfig(**QUICK, repeats=20)),
        (
            ["--quick", "--dtypes", "f16", "--repeats", "7"],
            flash.BenchConfig(**{**QUICK, "dtypes": ("f16",)}, repeats=7),
        ),
        (
            ["flash", *EVERY_OPTION],
            flash.BenchConfig(
                dtypes=("bf16", "f64"),
                head_dims=(64, 256),
                seqlens=(1024, 2048),
                causal=(True,),
                variants=("alibi", "gqa"),
                tokens=8192,
                layout="bhsd",
                warmup=0,
                repeats=5,
                peers=False,
                out=Path("x/y.json"),
            ),
        ),
    ],
)
def test_options_quick_preset_and_defaults_resolve(argv, expected):
    assert flash.resolve_config(parse("bench", *argv)) == expected


def test_grid_keeps_tokens_and_model_width():
    cases = flash.case_grid(flash.BenchConfig())
    assert len(cases) == 3 * 3 * 6 * 2
    assert {case.batch * case.seqlen for case in cases} == {16 * 1024}
    assert {case.heads * case.head_dim for case in cases} == {2048}
    assert [(case.dtype, case.head_dim, case.seqlen, case.causal) for case in cases[:3]] == [
        ("bf16", 64, 512, False),
        ("bf16", 64, 512, True),
        ("bf16", 64, 1024, False),
    ]
    config = flash.resolve_config(parse("bench", *EVERY_OPTION))
    assert [(case.batch, case.seqlen, case.variant) for case in flash.case_grid(config)[:3]] == [
        (8, 1024, "alibi"),
        (8, 1024, "gqa"),
        (4, 2048, "alibi"),
    ]


UNKNOWN_F8 = "unknown dtype 'f8' (expected one of bf16, f16, f32, f64)"
UNKNOWN_BIAS = "unknown variant 'bias' (expected one of plain, alibi, softcap, window, mask, gqa)"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--dtypes", "bf16,f8", UNKNOWN_F8),
        ("--dtypes", "fp16", "fp16"),
        ("--seqlens", "0", "0"),
        ("--seqlens", "1x", "1x"),
        ("--head-dims", "", "''"),
        ("--causal", "maybe", "maybe"),
        ("--warmup", "-1", "-1"),
        ("--repeats", "0", "0"),
        ("--layout", "sbhd", "sbhd"),
        ("--variants", "plain,bias", UNKNOWN_BIAS),
        ("--variants", "", "''"),
    ],
)
def test_invalid_option_is_a_usage_error(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        parse("bench", option, value)
    err = capsys.readouterr().err
    assert (exit_info.value.code, option in err, message in err) == (2, True, True)


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["bench"], "baracuda bench"),
        (["bench", "ring", "--quick"], "baracuda bench ring"),
    ],
)
def test_no_gpu_prints_one_line_and_exits_zero(monkeypatch, capsys, tmp_path, argv, program):
    monkeypatch.setattr(common, "probe_gpu", lambda: common.GpuInfo(False, reason="probe says"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{program}: {NO_GPU_TEXT} (probe says); nothing to time.\n")
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
    assert "Traceback" not in completed.stderr
    assert [line for line in completed.stderr.splitlines() if NO_GPU_TEXT in line] != []
    assert list(tmp_path.iterdir()) == []


def test_probe_and_driver_version_come_from_the_driver_and_cuda_core(monkeypatch):
    from baracuda import _cuda

    monkeypatch.setattr(_cuda, "_device_absence", lambda: "cuInit returned NO_DEVICE")
    assert common.probe_gpu() == common.GpuInfo(False, reason="cuInit returned NO_DEVICE")

    device = types.SimpleNamespace(
        name="NVIDIA H200",
        compute_capability=types.SimpleNamespace(major=9, minor=0),
        properties=types.SimpleNamespace(l2_cache_size=60 * common.MIBI),
    )
    fake_device = type(
        "Device",
        (),
        {
            "__new__": lambda cls, ordinal: device,
            "get_all_devices": staticmethod(lambda: (device,) * 2),
        },
    )
    system = types.SimpleNamespace(
        get_user_mode_driver_version=lambda: (13, 0),
        get_kernel_mode_driver_version=lambda: (580, 159, 4),
    )
    monkeypatch.setattr(_cuda, "_device_absence", lambda: None)
    monkeypatch.setitem(
        sys.modules, "cuda.core", types.SimpleNamespace(Device=fake_device, system=system)
    )
    assert common.probe_gpu() == common.GpuInfo(
        present=True,
        name="NVIDIA H200",
        compute_capability="9.0",
        l2_cache_bytes=60 * common.MIBI,
        device_count=2,
        driver_cuda_version="13.0",
    )
    assert common.software_versions(baracuda=None)["nvidia_driver"] == "580.159.04"


def test_flops_and_statistics():
    case = flash.Case(dtype="bf16", head_dim=128, heads=16, batch=4, seqlen=4096, causal=False)
    assert flash.flops(case) == 4 * 4 * 16 * 4096 * 4096 * 128 == 2**39
    assert flash.flops(flash.Case(**{**case.__dict__, "causal": True})) == 2**38
    assert common.summarize([5.0, 1.0, 4.0, 2.0, 3.0], 2**39) == pytest.approx(
        {
            "status": "ok",
            "median_ms": 3.0,
            "p10_ms": 1.4,
            "p90_ms": 4.6,
            "min_ms": 1.0,
            "runs": 5,
            "tflops": 2**39 / 3.0e-3 / 1e12,
        }
    )


@pytest.mark.parametrize(
    ("seqlen", "l2_bytes", "expected"),
    [
        (512, 50 * common.MIBI, 13),
        (512, 0, 17),
        (16384, 50 * common.MIBI, 3),
        (16, 50 * common.MIBI, 64),
    ],
)
def test_input_sets_exceed_twice_the_l2(seqlen, l2_bytes, expected):
    case = flash.Case(dtype="bf16", head_dim=64, heads=32, batch=1, seqlen=seqlen, causal=False)
    footprint = flash.input_footprint(case, l2_bytes)
    set_bytes = 4 * 32 * seqlen * 64 * 2
    assert footprint == flash.InputFootprint(expected, False, expected * set_bytes)
    assert expected == common.MAX_INPUT_SETS or expected * set_bytes > 2 * (
        l2_bytes or 64 * common.MIBI
    )


@pytest.mark.parametrize(("warmup", "warmup_indices"), [(5, [0, 1, 2, 0, 1]), (1, [0, 1, 2])])
def test_time_calls_rotates_sets_and_times_each_call(warmup, warmup_indices):
    clock, calls = FakeClock(), []

    def fn(index):
        calls.append(index)
        clock.now_ms += 1.0 + index

    timer = FakeTimer(clock)
    samples = common.time_calls(fn, 3, timer=timer, warmup=warmup, repeats=4)
    assert calls == [*warmup_indices, 0, 1, 2, 0]
    assert (samples, timer.synchronizations) == ([1.0, 2.0, 3.0, 1.0], 2)


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        (
            lambda case, call: FakeUnsupportedError("D") if call == 0 else None,
            {"status": "unsupported", "error": "FakeUnsupportedError: D"},
        ),
        (
            lambda case, call: ValueError("bad") if call == 0 else None,
            {"status": "error", "error": "ValueError: bad"},
        ),
        (
            lambda case, call: FakeUnsupportedError("late") if call == 2 else None,
            {"status": "error", "error": "FakeUnsupportedError: late"},
        ),
    ],
)
def test_measure_classifies_failures(fail, expected):
    clock = FakeClock()
    timer = FakeTimer(clock)
    assert (
        flash.measure(
            fake("x", clock, fail=fail), CASE, [None] * 3, timer=timer, warmup=1, repeats=2
        )
        == expected
    )


def test_measure_keeps_the_warnings_of_a_torch_refusal():
    def refuse(case, call):
        for _ in range(2):
            warnings.warn("flash needs f16 or bf16", stacklevel=1)
        return RuntimeError("No available kernel. Aborting execution.")

    clock = FakeClock()
    peer = dataclasses.replace(
        fake("peer", clock, peer=True, fail=refuse), is_unsupported=common.is_torch_unsupported
    )
    assert flash.measure(peer, CASE, [None], timer=FakeTimer(clock), warmup=1, repeats=1) == {
        "status": "unsupported",
        "error": "RuntimeError: No available kernel. Aborting execution.",
        "warnings": ["flash needs f16 or bf16"],
    }
    assert not common.is_torch_unsupported(RuntimeError("CUDA error: an illegal memory access"))
    assert not common.is_torch_unsupported(type("OutOfMemoryError", (RuntimeError,), {})("OOM"))


def test_inputs_are_random_distinct_views_in_bshd_layout():
    clock, seen = FakeClock(), []
    config = flash.BenchConfig(
        dtypes=("f32",),
        head_dims=(64,),
        seqlens=(128,),
        causal=(False,),
        tokens=256,
        warmup=0,
        repeats=1,
    )
    run_fake(config, [fake("baracuda", clock, seen=seen)], clock)
    case, sets, _ = seen[0]
    assert len(sets) == flash.input_footprint(case, FAKE_GPU.l2_cache_bytes).set_count
    assert sorted({index for _, _, index in seen}) == list(range(len(sets)))
    for tensor in (sets[0].q, sets[0].k, sets[0].v, sets[0].out):
        assert tensor.shape == (case.batch, case.heads, case.seqlen, case.head_dim)
        assert tensor.strides[1] == case.head_dim * tensor.itemsize  # [B, S, H, D] storage
    assert np.count_nonzero(sets[0].q) == sets[0].q.size
    assert not np.array_equal(sets[0].q, sets[0].k) and not np.array_equal(sets[0].q, sets[1].q)


def test_run_writes_the_recorded_schema_and_table(tmp_path):
    clock = FakeClock()
    refuse = lambda case, call: FakeUnsupportedError() if case.causal else None  # noqa: E731
    implementations = [
        fake("baracuda", clock, ms=2.0),
        fake("flash", clock, ms=3.0, peer=True),
        fake("cudnn", clock, ms=1.0, peer=True, fail=refuse),
    ]
    software = common.software_versions(baracuda=types.SimpleNamespace(__version__="0.1.0"))
    plan = {"backend": "hopper", "sku": "fake"}
    document, progress = run_fake(
        SMALL, implementations, clock, plan_info=lambda case: plan, software=software
    )
    loaded = json.loads(common.write_json(tmp_path / "new" / "r.json", document).read_text())

    # Schema 2 adds the variants: grid "variants" and "variant_settings", a case's "variant".
    assert (loaded["schema"], set(loaded)) == ("baracuda-bench-flash/2", set(RECORDED))
    for key in ("gpu", "software", "timing"):
        assert set(loaded[key]) == set(RECORDED[key]), key
    assert set(loaded["grid"]) == {*RECORDED["grid"], "variants", "variant_settings"}
    assert (loaded["grid"]["variants"], loaded["grid"]["variant_settings"]) == (["plain"], {})
    assert set(loaded["implementations"][0]) == set(RECORDED["implementations"][0])
    full, causal = loaded["cases"][:2]
    assert set(full) == {*RECORDED["cases"][0], "variant"}
    assert {case["variant"] for case in loaded["cases"]} == {"plain"}
    assert set(full["results"]["baracuda"]) == set(RECORDED["cases"][0]["results"]["baracuda"])
    assert (loaded["date"], loaded["timing"]["warmup"], len(loaded["cases"])) == (
        "2025-01-02",
        2,
        4,
    )
    assert (full["batch"], full["heads"], full["baracuda_plan"]) == (4, 32, plan)
    assert full["results"]["baracuda"]["tflops"] == pytest.approx(full["flops"] / 2e-3 / 1e12)
    assert (full["best_peer"], full["speedup_vs_best_peer"]) == ("cudnn", 0.5)
    assert causal["results"]["cudnn"]["status"] == "unsupported"
    assert (causal["best_peer"], causal["speedup_vs_best_peer"]) == ("flash", 1.5)
    assert "[4/4] f16 D=64 H=32 B=2 S=128 causal: baracuda 2.000 ms" in progress

    table = flash.format_table(loaded).splitlines()
    columns = " ".join(f"{name} ms TFLOP/s" for name in ("baracuda", "flash", "cudnn"))
    assert table[0].split() == f"dtype D H B S causal {columns} speedup".split()
    assert set(table[1]) == {"-", " "} and len(table) == 2 + len(loaded["cases"])
    assert table[2].split() == [
        "f16",
        "64",
        "32",
        "4",
        "64",
        "no",
        "2.000",
        "0.1",
        "3.000",
        "0.0",
        "1.000",
        "0.1",
        "0.50x",
    ]
    assert "unsupported" in table[3] and table[3].endswith("1.50x")
    assert len({len(line) for line in table}) == 1  # right-aligned columns


def test_recorded_results_render_as_a_table():
    table = flash.format_table(RECORDED).splitlines()
    assert "torch cudnn ms" in table[0] and len(table) == 2 + len(RECORDED["cases"])
    assert table[2].split()[-1] == f"{RECORDED['cases'][0]['speedup_vs_best_peer']:.2f}x"


def fake_flash_command(monkeypatch):
    """Run ``bench flash`` on a fake GPU with numpy arrays, fake events and a fake baracuda."""
    clock = FakeClock()
    libraries = types.SimpleNamespace(
        torch=None,
        cupy=None,
        events_name=FakeTimer.method,
        arrays_name=NumpyArrays.name,
        arrays_and_timer=lambda: (NumpyArrays(), FakeTimer(clock)),
    )
    monkeypatch.setattr(common, "probe_gpu", lambda: FAKE_GPU)
    monkeypatch.setattr(common, "import_libraries", lambda program: libraries)
    monkeypatch.setattr(flash, "baracuda_implementation", lambda baracuda: fake("baracuda", clock))
    monkeypatch.setattr(flash, "baracuda_plan_info", lambda baracuda, case: {"sku": "fake"})


def test_command_on_a_fake_gpu_prints_the_table_and_writes_json(monkeypatch, capsys, tmp_path):
    fake_flash_command(monkeypatch)
    out = tmp_path / "flash.json"
    assert (
        main(
            [
                "bench",
                "--dtypes",
                "f32",
                "--head-dims",
                "64",
                "--seqlens",
                "64,128",
                "--tokens",
                "256",
                "--repeats",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    stdout, stderr = capsys.readouterr()
    document = json.loads(out.read_text())
    assert stdout.splitlines() == [
        *flash.format_table(document).splitlines(),
        f"results written to {out}",
    ]
    assert "speedup" not in stdout and len(document["cases"]) == 4 and document["complete"]
    assert stderr.startswith(f"baracuda bench: 4 cases on {FAKE_GPU.name}\n[1/4] f32 D=64")


def test_dtype_without_array_support_is_skipped_and_reported():
    fake_cupy = types.SimpleNamespace(
        float16=np.float16,
        float32=np.float32,
        float64=np.float64,
        random=types.SimpleNamespace(seed=lambda seed: None),
    )
    clock = FakeClock()
    config = flash.BenchConfig(
        dtypes=("bf16",), head_dims=(64,), seqlens=(128,), causal=(False,), tokens=128
    )
    document, _ = run_fake(
        config, [fake("baracuda", clock)], clock, arrays=common.CupyArrays(fake_cupy)
    )
    reason = "bf16 inputs need torch (CuPy has no bf16 dtype)"
    assert document["cases"][0]["results"]["baracuda"] == {"status": "skipped", "error": reason}
    printed = io.StringIO()
    flash.print_table(document, printed)
    assert printed.getvalue().splitlines()[-1] == (
        f"baracuda skipped on bf16 D=64 H=32 B=1 S=128 full: {reason}"
    )


def test_interrupt_keeps_measured_cases():
    clock = FakeClock()
    stop = lambda case, call: KeyboardInterrupt() if case.seqlen == 128 else None  # noqa: E731
    document, progress = run_fake(SMALL, [fake("baracuda", clock, fail=stop)], clock)
    assert document["complete"] is False
    assert [case["seqlen"] for case in document["cases"]] == [64, 64]
    assert "interrupted after 2 of 4 cases" in progress


# ---------------------------------------------------------------------------------
# Variants: score modifiers and GQA
# ---------------------------------------------------------------------------------

ALL_VARIANTS = ("plain", "alibi", "softcap", "window", "mask", "gqa")
TINY = flash.BenchConfig(
    dtypes=("f16",),
    head_dims=(64,),
    seqlens=(16,),
    tokens=32,
    variants=ALL_VARIANTS,
    warmup=1,
    repeats=2,
)


def fake_torch(monkeypatch, clock, calls, *, version="2.5.1"):
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
        clock.now_ms += 1.0

    attention = types.SimpleNamespace(SDPBackend=backends, sdpa_kernel=sdpa_kernel)
    nn = types.SimpleNamespace(
        functional=types.SimpleNamespace(scaled_dot_product_attention=sdpa), attention=attention
    )
    torch = types.SimpleNamespace(__version__=version, nn=nn)
    for name, module in (("torch", torch), ("torch.nn", nn), ("torch.nn.attention", attention)):
        monkeypatch.setitem(sys.modules, name, module)
    return torch


def fake_baracuda(clock, calls):
    """A ``baracuda`` whose ``flash_attention`` records ``(q, k, v, kwargs)``."""

    def flash_attention(q, k, v, **kwargs):
        calls.append((q, k, v, kwargs))
        clock.now_ms += 1.0

    return types.SimpleNamespace(
        flash_attention=flash_attention, UnsupportedError=FakeUnsupportedError
    )


def test_variants_multiply_the_grid_and_keep_each_problem_together():
    cases = flash.case_grid(dataclasses.replace(SMALL, variants=("plain", "window", "gqa")))
    assert len(cases) == 3 * len(flash.case_grid(SMALL)) == 12
    assert [(case.seqlen, case.causal, case.variant) for case in cases[:4]] == [
        (64, False, "plain"),
        (64, False, "window"),
        (64, False, "gqa"),
        (64, True, "plain"),
    ]
    plain, window, gqa = cases[:3]
    assert (plain.heads_k, plain.window, plain.label()) == (32, None, "f16 D=64 H=32 B=4 S=64 full")
    assert (window.window, window.label()) == ((1024, 1024), "f16 D=64 H=32 B=4 S=64 full window")
    assert (gqa.heads_k, gqa.label()) == (4, "f16 D=64 H=32 Hk=4 B=4 S=64 full gqa")
    assert cases[4].window == (1024, 0)  # causal: no key after the query


@pytest.mark.parametrize(("heads", "heads_k"), [(32, 4), (16, 2), (8, 1), (4, 1), (20, 2), (17, 1)])
def test_gqa_kv_heads_divide_the_query_heads(heads, heads_k):
    case = flash.Case(dtype="bf16", head_dim=64, heads=heads, batch=1, seqlen=8, causal=False)
    assert dataclasses.replace(case, variant="gqa").heads_k == heads_k
    assert case.heads_k == heads


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen", [512, 1024, 1025, 3000])
def test_window_flops_count_the_pairs_inside_the_window(causal, seqlen):
    case = flash.Case(
        dtype="bf16", head_dim=64, heads=2, batch=3, seqlen=seqlen, causal=causal, variant="window"
    )
    plain = flash.flops(dataclasses.replace(case, variant="plain"))
    query, key = np.indices((seqlen, seqlen))
    left, right = case.window
    outside = np.count_nonzero(query - key > left)
    if not causal:
        outside += np.count_nonzero(key - query > right)
    assert flash.flops(case) == plain - 4 * 3 * 2 * 64 * outside
    assert (flash.flops(case) == plain) == (seqlen <= 1024 + 1)
    for variant in ("alibi", "softcap", "mask", "gqa"):
        assert flash.flops(dataclasses.replace(case, variant=variant)) == plain


def test_alibi_inputs_give_slopes_and_the_peers_bias():
    slopes = flash.alibi_slopes(8)
    assert slopes.dtype == np.float32
    np.testing.assert_array_equal(slopes, 2.0 ** -np.arange(1, 9))
    case = flash.Case(dtype="f16", head_dim=64, heads=8, batch=2, seqlen=6, causal=True)
    case = dataclasses.replace(case, variant="alibi")
    inputs = flash.score_inputs(case, NumpyArrays(), peers=True)
    np.testing.assert_array_equal(inputs["alibi_slopes"], slopes)
    bias = inputs["attn_mask"]
    assert (bias.shape, bias.dtype, set(inputs)) == (
        (1, 8, 6, 6),
        np.float16,
        {"alibi_slopes", "attn_mask"},
    )
    query, key = np.indices((6, 6))
    expected = -slopes[:, None, None] * np.abs(query - key)
    np.testing.assert_array_equal(bias[0], np.where(key > query, -np.inf, expected).astype("f2"))
    full = flash.score_inputs(dataclasses.replace(case, causal=False), NumpyArrays(), peers=True)
    np.testing.assert_array_equal(full["attn_mask"][0], expected.astype(np.float16))
    assert set(flash.score_inputs(case, NumpyArrays(), peers=False)) == {"alibi_slopes"}


@pytest.mark.parametrize(("dtype", "causal"), [("f16", False), ("f16", True), ("f32", True)])
def test_mask_inputs_give_the_peers_the_same_values(dtype, causal):
    case = flash.Case(
        dtype=dtype, head_dim=64, heads=2, batch=3, seqlen=5, causal=causal, variant="mask"
    )
    inputs = flash.score_inputs(case, NumpyArrays(), peers=True)
    mask, attn_mask = inputs["mask"], inputs["attn_mask"]
    peer_dtype = NumpyArrays.dtypes[dtype]
    assert (mask.shape, mask.dtype, attn_mask.dtype) == ((3, 2, 5, 5), np.float32, peer_dtype)
    assert np.isfinite(mask).all() and np.count_nonzero(mask) == mask.size
    query, key = np.indices((5, 5))
    expected = np.where(key > query, -np.inf, mask) if causal else mask
    np.testing.assert_array_equal(attn_mask, expected.astype(peer_dtype))
    f32_full = dataclasses.replace(case, dtype="f32", causal=False)
    f32 = flash.score_inputs(f32_full, NumpyArrays(), peers=True)
    assert f32["attn_mask"] is f32["mask"]
    assert set(flash.score_inputs(case, NumpyArrays(), peers=False)) == {"mask"}
    softcap = dataclasses.replace(case, variant="softcap")
    assert flash.score_inputs(softcap, NumpyArrays(), peers=True) == {}


def test_score_inputs_are_shared_only_when_larger_than_the_l2_span():
    # The shape: bf16 D=128 S=4k with an f32 [B, H, S, S] mask, 16k tokens.
    case = flash.Case(
        dtype="bf16", head_dim=128, heads=16, batch=4, seqlen=4096, causal=False, variant="mask"
    )
    qkv_bytes = 4 * 4 * 16 * 4096 * 128 * 2
    mask_bytes = 4 * 16 * 4096 * 4096 * 4
    assert mask_bytes == 4 * common.GIBI
    footprint = flash.input_footprint(case, 60 * common.MIBI, peers=True)
    assert footprint == flash.InputFootprint(3, True, 3 * qkv_bytes + mask_bytes * 3 // 2)
    assert footprint.total_bytes < flash.DEFAULT_INPUT_BUDGET_BYTES
    assert flash.input_footprint(case, 60 * common.MIBI).total_bytes == 3 * qkv_bytes + mask_bytes
    large = dataclasses.replace(case, head_dim=64, heads=32, batch=1, seqlen=16384)
    large_bytes = flash.input_footprint(large, 0, peers=True).total_bytes
    assert large_bytes > flash.DEFAULT_INPUT_BUDGET_BYTES

    small = flash.Case(dtype="f16", head_dim=64, heads=2, batch=1, seqlen=64, causal=False)
    small = dataclasses.replace(small, variant="alibi")
    set_bytes = 4 * 2 * 64 * 64 * 2 + 2 * 4 + 2 * 64 * 64 * 2
    count = common.sets_to_exceed_l2(set_bytes, FAKE_GPU.l2_cache_bytes)
    footprint = flash.input_footprint(small, FAKE_GPU.l2_cache_bytes, peers=True)
    assert footprint == flash.InputFootprint(count, False, count * set_bytes)
    sets = flash.make_inputs(small, 3, NumpyArrays(), peers=True)
    assert sets[0].attn_mask is not sets[1].attn_mask
    shared = flash.make_inputs(small, 3, NumpyArrays(), peers=True, shared_score_inputs=True)
    assert shared[0].attn_mask is shared[2].attn_mask and shared[0].q is not shared[2].q
    gqa = flash.make_inputs(dataclasses.replace(small, heads=16, variant="gqa"), 1, NumpyArrays())
    assert (gqa[0].q.shape, gqa[0].k.shape, gqa[0].v.shape, gqa[0].out.shape) == (
        (1, 16, 64, 64),
        (1, 2, 64, 64),
        (1, 2, 64, 64),
        (1, 16, 64, 64),
    )
    assert (gqa[0].alibi_slopes, gqa[0].mask, gqa[0].attn_mask) == (None, None, None)


def test_case_over_the_input_budget_is_skipped_without_allocating():
    clock, seen = FakeClock(), []
    config = dataclasses.replace(
        TINY, seqlens=(256,), tokens=512, variants=("plain", "mask"), causal=(False,)
    )
    plain_case, mask_case = flash.case_grid(config)
    budget = flash.input_footprint(plain_case, FAKE_GPU.l2_cache_bytes).total_bytes
    mask_footprint = flash.input_footprint(mask_case, FAKE_GPU.l2_cache_bytes)
    assert mask_footprint.shared_score_inputs and mask_footprint.total_bytes > budget
    document, progress = run_fake(
        dataclasses.replace(config, input_budget_bytes=budget),
        [fake("baracuda", clock, seen=seen)],
        clock,
    )
    plain, mask = document["cases"]
    assert plain["results"]["baracuda"]["status"] == "ok"
    assert mask["results"]["baracuda"] == {
        "status": "skipped",
        "error": "inputs would take 0.04 GiB, over the 0.02 GiB input budget",
    }
    assert (mask["input_sets"], mask["variant"]) == (mask_footprint.set_count, "mask")
    assert {case.variant for case, _, _ in seen} == {"plain"}
    assert (mask["best_peer"], mask["speedup_vs_best_peer"]) == (None, None)
    assert "[2/2] f16 D=64 H=32 B=2 S=256 full mask: baracuda skipped" in progress


def test_baracuda_gets_each_variants_arguments(monkeypatch):
    clock, calls = FakeClock(), []
    implementation = flash.baracuda_implementation(fake_baracuda(clock, calls))
    arguments = {}
    for case in flash.case_grid(dataclasses.replace(TINY, causal=(True,))):
        (inputs,) = flash.make_inputs(case, 1, NumpyArrays())
        implementation.bind(case, [inputs])(0)
        q, k, v, kwargs = calls[-1]
        assert (q, k, v, kwargs.pop("out")) == (inputs.q, inputs.k, inputs.v, inputs.out)
        arguments[case.variant] = (k.shape[1], kwargs, inputs)
    plain = {"causal": True, "alibi_slopes": None, "mask": None}
    assert arguments["plain"][:2] == (32, plain)
    assert arguments["softcap"][:2] == (32, {**plain, "softcap": 30.0})
    assert arguments["window"][:2] == (32, {**plain, "window": (1024, 0)})
    assert arguments["gqa"][:2] == (4, plain)
    alibi, mask = arguments["alibi"][2], arguments["mask"][2]
    assert arguments["alibi"][1] == {**plain, "alibi_slopes": alibi.alibi_slopes}
    assert arguments["mask"][1] == {**plain, "mask": mask.mask}
    assert (alibi.attn_mask, mask.attn_mask, mask.mask.shape) == (None, None, (2, 32, 16, 16))

    monkeypatch.setattr(common, "flash_plan_info", lambda baracuda, descriptor: descriptor)
    descriptor = types.SimpleNamespace(FlashSdpaDescriptor=lambda *extents, **options: options)
    plain_descriptor = {
        "is_causal": True,
        "element": "f16",
        "window_size_left": None,
        "window_size_right": None,
    }
    expected = {
        "plain": plain_descriptor,
        "softcap": {**plain_descriptor, "softcap": 30.0},
        "window": {**plain_descriptor, "window_size_left": 1024, "window_size_right": 0},
    }
    for case in flash.case_grid(dataclasses.replace(TINY, causal=(True,))):
        got = flash.baracuda_plan_info(descriptor, case)
        assert got == expected.get(case.variant, plain_descriptor), case.variant


def run_with_torch_peers(monkeypatch, config, *, version="2.5.1"):
    """Run ``config`` with a fake baracuda and the torch peers over a fake torch."""
    clock, baracuda_calls, torch_calls = FakeClock(), [], []
    torch = fake_torch(monkeypatch, clock, torch_calls, version=version)
    implementations = [
        flash.baracuda_implementation(fake_baracuda(clock, baracuda_calls)),
        *flash.torch_sdpa_implementations(torch, variants=config.variants),
    ]
    document, progress = run_fake(config, implementations, clock)
    return document, progress, torch_calls


def statuses(record):
    return {name: result["status"] for name, result in record["results"].items()}


def test_peers_run_or_are_unsupported_per_variant(monkeypatch):
    document, _, torch_calls = run_with_torch_peers(monkeypatch, TINY)
    names = [item["name"] for item in document["implementations"]]
    assert names == ["baracuda", "torch_flash", "torch_cudnn", "torch_efficient"]
    assert document["grid"]["variants"] == list(ALL_VARIANTS)
    assert set(document["grid"]["variant_settings"]) == {*ALL_VARIANTS[1:], "causal_attn_mask"}
    records = {(case["variant"], case["causal"]): case for case in document["cases"]}
    assert len(records) == len(document["cases"]) == 12
    ok, unsupported = "ok", "unsupported"
    every = {"baracuda": ok, "torch_flash": ok, "torch_cudnn": ok, "torch_efficient": ok}
    for causal in (False, True):
        assert statuses(records["plain", causal]) == every
        assert statuses(records["gqa", causal]) == every
        for variant in ("alibi", "mask"):
            assert statuses(records[variant, causal]) == {**every, "torch_flash": unsupported}
            flash_result = records[variant, causal]["results"]["torch_flash"]
            assert flash_result["warnings"] == ["Flash attention does not support an attn_mask"]
        for variant, reason in (("softcap", "softcap"), ("window", "sliding window")):
            record = records[variant, causal]
            assert statuses(record) == {"baracuda": ok, **dict.fromkeys(names[1:], unsupported)}
            assert record["results"]["torch_cudnn"]["error"] == (
                f"CaseUnsupportedError: torch SDPA has no {reason}"
            )
            assert (record["best_peer"], record["speedup_vs_best_peer"]) == (None, None)
    assert records["gqa", True]["heads_k"] == 4
    assert "heads_k" not in records["plain", True]

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
        assert {bool(np.isneginf(kwargs["attn_mask"]).any()) for kwargs in calls} == {False, True}


def test_gqa_peers_are_unsupported_before_enable_gqa(monkeypatch):
    config = dataclasses.replace(TINY, variants=("plain", "gqa"), causal=(False,))
    document, _, _ = run_with_torch_peers(monkeypatch, config, version="2.4.1+cu121")
    plain, gqa = document["cases"]
    assert [item["name"] for item in document["implementations"]] == [
        "baracuda",
        "torch_flash",
        "torch_cudnn",
    ]
    assert set(statuses(plain).values()) == {"ok"}
    assert statuses(gqa) == {
        "baracuda": "ok",
        "torch_flash": "unsupported",
        "torch_cudnn": "unsupported",
    }
    assert gqa["results"]["torch_flash"]["error"] == (
        "CaseUnsupportedError: this torch SDPA has no enable_gqa (PyTorch 2.5+)"
    )


def test_case_unsupported_in_bind_is_recorded_whatever_the_classifier_says():
    clock = FakeClock()

    def refuse(case, sets):
        raise flash.CaseUnsupportedError("cannot express it")

    peer = dataclasses.replace(fake("peer", clock, peer=True), bind=refuse)
    assert flash.measure(peer, CASE, [None], timer=FakeTimer(clock), warmup=1, repeats=1) == {
        "status": "unsupported",
        "error": "CaseUnsupportedError: cannot express it",
    }


def test_variant_column_and_labels_in_the_table(monkeypatch):
    config = dataclasses.replace(TINY, variants=("plain", "softcap"), causal=(True,))
    document, progress, _ = run_with_torch_peers(monkeypatch, config)
    table = flash.format_table(document).splitlines()
    assert table[0].split()[:7] == ["dtype", "D", "H", "B", "S", "causal", "variant"]
    assert [line.split()[6] for line in table[2:]] == ["plain", "softcap"]
    assert table[3].split()[7:] == ["1.000", "0.0", "unsupported", "unsupported", "-"]
    assert "[2/2] f16 D=64 H=32 B=2 S=16 causal softcap: baracuda 1.000 ms" in progress
    printed = io.StringIO()
    flash.print_table(document, printed)
    assert printed.getvalue().splitlines() == table  # unsupported is not a failure to list


def test_plain_default_keeps_the_columns_and_the_peers(monkeypatch):
    config = dataclasses.replace(TINY, variants=flash.DEFAULT_VARIANTS)
    document, progress, torch_calls = run_with_torch_peers(monkeypatch, config)
    assert [item["name"] for item in document["implementations"]] == [
        "baracuda",
        "torch_flash",
        "torch_cudnn",
    ]
    table = flash.format_table(document).splitlines()
    header = "dtype D H B S causal baracuda ms TFLOP/s torch flash ms TFLOP/s torch cudnn ms"
    assert table[0].split() == [*header.split(), "TFLOP/s", "speedup"]
    for record in document["cases"]:
        assert list(record) == [
            "dtype",
            "head_dim",
            "heads",
            "batch",
            "seqlen",
            "causal",
            "variant",
            "flops",
            "input_sets",
            "results",
            "best_peer",
            "speedup_vs_best_peer",
        ]
        assert record["variant"] == "plain"
    assert {kwargs["attn_mask"] for _, _, _, _, kwargs in torch_calls} == {None}
    assert "[1/2] f16 D=64 H=32 B=2 S=16 full: baracuda 1.000 ms" in progress


@pytest.mark.parametrize(("dtype", "tolerance"), [("f32", 1e-5), ("bf16", 3e-2)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", ["plain", "alibi", "mask", "gqa"])
def test_torch_peers_pose_the_problem_baracuda_gets(dtype, tolerance, causal, variant):
    """PyTorch's host SDPA on the peers' inputs against the float64 reference on baracuda's."""
    torch = pytest.importorskip("torch")
    from baracuda import reference

    case = flash.Case(
        dtype=dtype, head_dim=16, heads=16, batch=2, seqlen=24, causal=causal, variant=variant
    )
    (inputs,) = flash.make_inputs(case, 1, TorchCpuArrays(torch), peers=True)
    (peer, *_) = flash.torch_sdpa_implementations(torch, variants=(variant,))
    got = peer.bind(case, [inputs])(0)  # outside the backend's context: the host kernels

    def host(tensor):
        return None if tensor is None else tensor.float().numpy()

    expected, _ = reference.attention(
        host(inputs.q),
        host(inputs.k),
        host(inputs.v),
        causal=causal,
        alibi_slopes=host(inputs.alibi_slopes),
        mask=host(inputs.mask),
        **flash.score_options(case),
    )
    assert (inputs.k.shape[1], got.dtype) == (case.heads_k, inputs.q.dtype)
    np.testing.assert_allclose(host(got), expected, rtol=tolerance, atol=tolerance)


def test_command_with_variants_prints_the_variant_column(monkeypatch, capsys, tmp_path):
    fake_flash_command(monkeypatch)
    out = tmp_path / "flash.json"
    argv = ["bench", "--dtypes", "f32", "--head-dims", "64", "--seqlens", "64", "--tokens", "64"]
    argv += ["--variants", "plain,mask,gqa", "--causal", "yes", "--repeats", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    document = json.loads(out.read_text())
    assert [case["variant"] for case in document["cases"]] == ["plain", "mask", "gqa"]
    assert stdout.splitlines()[0].split()[:7] == ["dtype", "D", "H", "B", "S", "causal", "variant"]
    assert stderr.startswith(f"baracuda bench: 3 cases on {FAKE_GPU.name}\n")


@pytest.mark.gpu
def test_bench_smoke_on_gpu(tmp_path, capsys):
    out = tmp_path / "results" / "smoke.json"
    argv = ["bench", "--dtypes", "f16", "--head-dims", "64", "--seqlens", "512", "--causal", "yes"]
    argv += ["--tokens", "1k", "--warmup", "2", "--repeats", "5", "--out", str(out)]
    assert main(argv) == 0
    assert f"results written to {out}" in capsys.readouterr().out
    document = json.loads(out.read_text())
    (case,) = document["cases"]
    assert (document["complete"], case["batch"], case["heads"], case["causal"]) == (
        True,
        2,
        32,
        True,
    )
    ours = case["results"]["baracuda"]
    assert ours["status"] == "ok", ours
    assert 0 < ours["min_ms"] <= ours["median_ms"] <= ours["p90_ms"]
    assert case["results"]["torch_flash"]["status"] == "ok"
    assert case["results"]["torch_cudnn"]["status"] in ("ok", "unsupported")


@pytest.mark.gpu
def test_bench_variants_smoke_on_gpu(tmp_path, capsys):
    out = tmp_path / "variants.json"
    argv = ["bench", "--dtypes", "bf16", "--head-dims", "128", "--seqlens", "2k", "--tokens", "4k"]
    argv += ["--variants", ",".join(ALL_VARIANTS), "--warmup", "2", "--repeats", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"results written to {out}" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert [case["variant"] for case in document["cases"]] == [*ALL_VARIANTS] * 2
    for case in document["cases"]:
        results = case["results"]
        assert results["baracuda"]["status"] == "ok", (case["variant"], results["baracuda"])
        if case["variant"] in ("softcap", "window"):
            assert {results[name]["status"] for name in results if name != "baracuda"} == {
                "unsupported"
            }
        if case["variant"] in ("alibi", "mask"):
            assert results["torch_flash"]["status"] == "unsupported"
            assert results["torch_efficient"]["status"] == "ok", results["torch_efficient"]
