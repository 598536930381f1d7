"""CPU tests of the benchmark command line, ``python -m baracuda bench [flash]``.

Where a device would be needed, the GPU probe, the CUDA events and the arrays are the fakes
of ``_bench_fakes``; the recorded H200 results give the JSON schema the run must keep.
"""

from __future__ import annotations

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
from _bench_fakes import FAKE_GPU, FIXED_NOW, FakeClock, FakeTimer, NumpyArrays, parse
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
    assert [(case.batch, case.seqlen) for case in flash.case_grid(config)[:2]] == [
        (8, 1024),
        (4, 2048),
    ]


UNKNOWN_F8 = "unknown dtype 'f8' (expected one of bf16, f16, f32, f64)"


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
    count = flash.input_set_count(case, l2_bytes)
    assert count == expected
    set_bytes = 4 * 32 * seqlen * 64 * 2
    assert count == common.MAX_INPUT_SETS or count * set_bytes > 2 * (l2_bytes or 64 * common.MIBI)


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
    assert len(sets) == flash.input_set_count(case, FAKE_GPU.l2_cache_bytes)
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

    assert (loaded["schema"], set(loaded)) == (RECORDED["schema"], set(RECORDED))
    for key in ("gpu", "software", "timing", "grid"):
        assert set(loaded[key]) == set(RECORDED[key]), key
    assert set(loaded["implementations"][0]) == set(RECORDED["implementations"][0])
    full, causal = loaded["cases"][:2]
    assert set(full) == set(RECORDED["cases"][0])
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


def test_command_on_a_fake_gpu_prints_the_table_and_writes_json(monkeypatch, capsys, tmp_path):
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
