"""CPU tests of the benchmark command line, ``python -m baracuda bench``.

Everything here runs without a GPU: the GPU probe, the CUDA events and the arrays are
replaced by fakes (numpy arrays and a scripted clock) where a device would be needed.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from baracuda import _bench_flash as bench
from baracuda.__main__ import main, with_default_target

FULL_GRID_CASES = 3 * 3 * 6 * 2
NO_GPU_TEXT = "no CUDA GPU is present"


def parse(*argv: str):
    """Parse ``python -m baracuda <argv>`` without running it."""
    from baracuda.__main__ import build_parser

    return build_parser().parse_args(with_default_target(argv))


# ---------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------


class FakeClock:
    """A device clock that fake operations advance."""

    def __init__(self) -> None:
        self.now_ms = 0.0


class FakeEvent:
    def __init__(self) -> None:
        self.time_ms: float | None = None


class FakeTimer:
    """Records the fake clock at each event; elapsed time is what the calls advanced."""

    method = "fake events"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.synchronizations = 0

    def new_event(self) -> FakeEvent:
        return FakeEvent()

    def record(self, event: FakeEvent) -> None:
        event.time_ms = self.clock.now_ms

    def synchronize(self) -> None:
        self.synchronizations += 1

    def elapsed_ms(self, start: FakeEvent, end: FakeEvent) -> float:
        return end.time_ms - start.time_ms


class NumpyArrays:
    """Host stand-in for the device array libraries."""

    name = "numpy"

    def __init__(self) -> None:
        self._dtypes = {"f16": np.float16, "f32": np.float32, "f64": np.float64}
        self.rng = np.random.default_rng(0)
        self.releases = 0

    def randn(self, shape, dtype):
        return self.rng.standard_normal(shape).astype(self._dtypes[dtype])

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=self._dtypes[dtype])

    def release(self) -> None:
        self.releases += 1


class FakeUnsupportedError(Exception):
    pass


def fake_implementation(name, clock, *, duration_ms=1.0, peer=False, fail=None, seen=None):
    """An implementation whose calls take ``duration_ms`` on the fake clock.

    ``fail(case, call_number)`` returns an exception to raise, or None.
    ``seen`` collects ``(case, sets, index)`` of each call.
    """

    def bind(case, sets):
        calls = []

        def call(index):
            error = fail(case, len(calls)) if fail else None
            calls.append(index)
            if error is not None:
                raise error
            if seen is not None:
                seen.append((case, sets, index))
            clock.now_ms += duration_ms

        return call

    return bench.Implementation(
        name=name,
        label=name,
        bind=bind,
        is_peer=peer,
        is_unsupported=lambda exc: isinstance(exc, FakeUnsupportedError),
    )


SMALL_CONFIG = bench.BenchConfig(
    dtypes=("f16",),
    head_dims=(64,),
    seqlens=(64, 128),
    tokens=256,
    warmup=2,
    repeats=5,
)
FAKE_GPU = bench.GpuInfo(
    present=True,
    name="NVIDIA Test GPU 80GB",
    compute_capability="9.0",
    l2_cache_bytes=4 * bench.MIBI,
    device_count=1,
    driver_cuda_version="13.0",
)
FIXED_NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def fake_document(config, implementations):
    return bench.build_document(
        config,
        FAKE_GPU,
        software={"baracuda": "test"},
        timer_method=FakeTimer.method,
        arrays_name=NumpyArrays.name,
        implementations=implementations,
        now=FIXED_NOW,
    )


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def test_top_level_help_lists_bench(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_bench_help_lists_flash_target(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "flash" in capsys.readouterr().out


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench"], ["bench", "flash"]),
        (["bench", "--quick"], ["bench", "flash", "--quick"]),
        (["bench", "flash", "--quick"], ["bench", "flash", "--quick"]),
        (["bench", "--help"], ["bench", "--help"]),
        (["--help"], ["--help"]),
    ],
)
def test_bench_target_defaults_to_flash(argv, expected):
    assert with_default_target(argv) == expected


def test_default_grid():
    args = parse("bench")
    assert args.target == "flash"
    config = bench.resolve_config(args)
    assert config.dtypes == ("bf16", "f16", "f32")
    assert config.head_dims == (64, 128, 256)
    assert config.seqlens == (512, 1024, 2048, 4096, 8192, 16384)
    assert config.causal == (False, True)
    assert config.peers
    cases = bench.case_grid(config)
    assert len(cases) == FULL_GRID_CASES
    assert {case.batch * case.seqlen for case in cases} == {16 * 1024}
    assert {case.heads * case.head_dim for case in cases} == {2048}


def test_quick_preset_and_explicit_override():
    quick = bench.resolve_config(parse("bench", "--quick"))
    assert quick.dtypes == ("bf16",)
    assert quick.head_dims == (64, 128)
    assert quick.seqlens == (1024, 4096)
    assert (quick.warmup, quick.repeats) == (3, 20)
    assert len(bench.case_grid(quick)) == 8

    overridden = bench.resolve_config(
        parse("bench", "--quick", "--dtypes", "f16", "--repeats", "7")
    )
    assert overridden.dtypes == ("f16",)
    assert overridden.repeats == 7
    assert overridden.head_dims == (64, 128)


def test_every_option_parses():
    args = parse(
        "bench",
        "flash",
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
    )
    config = bench.resolve_config(args)
    assert config.dtypes == ("bf16", "f64")
    assert config.head_dims == (64, 256)
    assert config.seqlens == (1024, 2048)
    assert config.causal == (True,)
    assert config.tokens == 8192
    assert config.layout == "bhsd"
    assert (config.warmup, config.repeats) == (0, 5)
    assert config.out == Path("x/y.json")
    assert not config.peers
    assert [(case.batch, case.seqlen) for case in bench.case_grid(config)[:2]] == [
        (8, 1024),
        (4, 2048),
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--dtypes", "f8"),
        ("--dtypes", "bf16,fp16"),
        ("--seqlens", "0"),
        ("--seqlens", "1x"),
        ("--head-dims", ""),
        ("--causal", "maybe"),
        ("--warmup", "-1"),
        ("--repeats", "0"),
        ("--layout", "sbhd"),
    ],
)
def test_invalid_option_is_a_usage_error(capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        parse("bench", option, value)
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_unknown_dtype_message_names_it(capsys):
    with pytest.raises(SystemExit):
        parse("bench", "--dtypes", "bf16,f8")
    assert "unknown dtype 'f8' (expected one of bf16, f16, f32, f64)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------
# No GPU
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,program", [
    (["bench"], "baracuda bench"),
    (["bench", "ring", "--quick"], "baracuda bench ring"),
])
def test_no_gpu_prints_one_line_and_exits_zero(monkeypatch, capsys, tmp_path, argv, program):
    monkeypatch.setattr(
        bench, "probe_gpu", lambda: bench.GpuInfo(present=False, reason="probe says so")
    )
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{program}: {NO_GPU_TEXT} (probe says so); nothing to time."
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", [["--quick"], ["ring"]], ids=["flash", "ring"])
def test_no_visible_device_end_to_end(tmp_path, target):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, "-m", "baracuda", "bench", *target],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert [line for line in completed.stderr.splitlines() if NO_GPU_TEXT in line] != []
    assert list(tmp_path.iterdir()) == []


def test_probe_without_driver_library(monkeypatch):
    monkeypatch.setattr(bench, "_load_driver", lambda: None)
    info = bench.probe_gpu()
    assert not info.present
    assert "libcuda" in info.reason


def test_probe_reports_failed_driver_initialisation(monkeypatch):
    no_device = 100
    driver = types.SimpleNamespace(
        cuInit=lambda flags: no_device, cuGetErrorString=lambda status, text: 1
    )
    monkeypatch.setattr(bench, "_load_driver", lambda: driver)
    info = bench.probe_gpu()
    assert not info.present
    assert info.reason == "cuInit failed: CUresult 100"


# ---------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------


def test_flops_formula():
    case = bench.Case(dtype="bf16", head_dim=128, heads=16, batch=4, seqlen=4096, causal=False)
    assert bench.flops(case) == 4 * 4 * 16 * 4096 * 4096 * 128 == 2**39
    causal = bench.Case(dtype="bf16", head_dim=128, heads=16, batch=4, seqlen=4096, causal=True)
    assert bench.flops(causal) == 2**38


def test_summarize_statistics():
    case = bench.Case(dtype="f16", head_dim=64, heads=32, batch=1, seqlen=1024, causal=False)
    record = bench.summarize([5.0, 1.0, 4.0, 2.0, 3.0], bench.flops(case))
    assert record["status"] == "ok"
    assert record["median_ms"] == 3.0
    assert record["p10_ms"] == pytest.approx(1.4)
    assert record["p90_ms"] == pytest.approx(4.6)
    assert record["min_ms"] == 1.0
    assert record["runs"] == 5
    assert record["tflops"] == pytest.approx(bench.flops(case) / 3.0e-3 / 1e12)


@pytest.mark.parametrize(
    ("seqlen", "batch", "l2_bytes", "expected"),
    [
        (512, 1, 50 * bench.MIBI, 13),
        (512, 1, 0, 17),
        (16384, 1, 50 * bench.MIBI, 3),
        (16, 1, 50 * bench.MIBI, 64),
    ],
)
def test_input_set_count_exceeds_l2(seqlen, batch, l2_bytes, expected):
    case = bench.Case(
        dtype="bf16", head_dim=64, heads=32, batch=batch, seqlen=seqlen, causal=False
    )
    count = bench.input_set_count(case, l2_bytes)
    assert count == expected
    effective_l2 = l2_bytes or bench.FALLBACK_L2_BYTES
    assert count == bench.MAX_INPUT_SETS or count * bench.input_set_bytes(case) > 2 * effective_l2


def test_gpu_slug_and_default_path():
    assert bench.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert bench.gpu_slug("NVIDIA H200 (NVL)") == "nvidia-h200-nvl"
    path = bench.default_output_path("NVIDIA H100 80GB HBM3", datetime.date(2025, 1, 2))
    assert path == Path("benchmarks/results/nvidia-h100-80gb-hbm3-2025-01-02-flash.json")


# ---------------------------------------------------------------------------------
# Timing and failure handling
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("warmup", "warmup_indices"), [(5, [0, 1, 2, 0, 1]), (1, [0, 1, 2])])
def test_time_fn_rotates_sets_and_times_each_call(warmup, warmup_indices):
    clock = FakeClock()
    timer = FakeTimer(clock)
    calls = []

    def fn(index):
        calls.append(index)
        clock.now_ms += 1.0 + index

    samples = bench.time_fn(fn, 3, timer=timer, warmup=warmup, repeats=4)
    assert calls == [*warmup_indices, 0, 1, 2, 0]
    assert samples == [1.0, 2.0, 3.0, 1.0]
    assert timer.synchronizations == 2


def test_measure_classifies_first_call_failures():
    clock = FakeClock()
    timer = FakeTimer(clock)
    case = bench.Case(dtype="f16", head_dim=64, heads=2, batch=1, seqlen=8, causal=False)
    sets = [None] * 3

    def measure(fail):
        item = fake_implementation("x", clock, fail=fail)
        return bench.measure(item, case, sets, timer=timer, warmup=1, repeats=2)

    unsupported = measure(
        lambda case, call: FakeUnsupportedError("head dim") if call == 0 else None
    )
    assert unsupported == {"status": "unsupported", "error": "FakeUnsupportedError: head dim"}

    failed = measure(lambda case, call: ValueError("bad") if call == 0 else None)
    assert failed == {"status": "error", "error": "ValueError: bad"}

    failed_while_timing = measure(
        lambda case, call: FakeUnsupportedError("late") if call == 2 else None
    )
    assert failed_while_timing["status"] == "error"

    ok = measure(None)
    assert ok["status"] == "ok"
    assert ok["median_ms"] == 1.0


def test_measure_keeps_warnings_of_a_failure():
    import warnings

    timer = FakeTimer(FakeClock())
    case = bench.Case(dtype="f16", head_dim=64, heads=2, batch=1, seqlen=8, causal=False)

    def bind(case, sets):
        def call(index):
            warnings.warn("flash needs f16 or bf16", stacklevel=1)
            warnings.warn("flash needs f16 or bf16", stacklevel=1)
            raise RuntimeError("No available kernel. Aborting execution.")

        return call

    item = bench.Implementation(
        name="peer",
        label="peer",
        bind=bind,
        is_peer=True,
        is_unsupported=bench._is_torch_unsupported,
    )
    record = bench.measure(item, case, [None], timer=timer, warmup=1, repeats=1)
    assert record == {
        "status": "unsupported",
        "error": "RuntimeError: No available kernel. Aborting execution.",
        "warnings": ["flash needs f16 or bf16"],
    }


def test_torch_unsupported_classification():
    class OutOfMemoryError(RuntimeError):
        pass

    assert bench._is_torch_unsupported(RuntimeError("No available kernel. Aborting execution."))
    assert bench._is_torch_unsupported(NotImplementedError("head dim 256"))
    assert not bench._is_torch_unsupported(RuntimeError("CUDA error: an illegal memory access"))
    assert not bench._is_torch_unsupported(OutOfMemoryError("CUDA out of memory"))
    assert not bench._is_torch_unsupported(ValueError("bad"))


# ---------------------------------------------------------------------------------
# Whole run with fakes: inputs, records, table and JSON
# ---------------------------------------------------------------------------------


def run_fake_grid(config, implementations, clock, arrays=None, plan_info=None):
    document = fake_document(config, implementations)
    progress = io.StringIO()
    bench.run_benchmark(
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


def test_inputs_are_random_distinct_views_in_bshd_layout():
    clock = FakeClock()
    seen = []
    config = bench.BenchConfig(
        dtypes=("f32",),
        head_dims=(64,),
        seqlens=(128,),
        causal=(False,),
        tokens=256,
        warmup=0,
        repeats=1,
    )
    run_fake_grid(config, [fake_implementation("baracuda", clock, seen=seen)], clock)
    case, sets, _ = seen[0]
    shape = (case.batch, case.heads, case.seqlen, case.head_dim)
    assert len(sets) == bench.input_set_count(case, FAKE_GPU.l2_cache_bytes)
    assert sorted({index for _, _, index in seen}) == list(range(len(sets)))
    first = sets[0]
    for tensor in (first.q, first.k, first.v, first.out):
        assert tensor.shape == shape
        assert tensor.strides[-1] == tensor.itemsize
        assert tensor.strides[1] == case.head_dim * tensor.itemsize
    assert np.count_nonzero(first.q) == first.q.size
    assert not np.array_equal(first.q, first.k)
    assert not np.array_equal(first.q, sets[1].q)


def test_full_run_records_table_and_json(tmp_path):
    clock = FakeClock()
    implementations = [
        fake_implementation("baracuda", clock, duration_ms=2.0),
        fake_implementation("peer_a", clock, duration_ms=3.0, peer=True),
        fake_implementation(
            "peer_b",
            clock,
            duration_ms=1.0,
            peer=True,
            fail=lambda case, call: FakeUnsupportedError("causal") if case.causal else None,
        ),
    ]
    document, progress = run_fake_grid(
        SMALL_CONFIG,
        implementations,
        clock,
        plan_info=lambda case: {"backend": "portable", "sku": "fake"},
    )

    path = bench.write_json(tmp_path / "new-dir" / "result.json", document)
    loaded = json.loads(path.read_text())

    assert loaded["schema"] == bench.SCHEMA
    assert loaded["complete"] is True
    assert loaded["date"] == "2025-01-02"
    assert loaded["gpu"]["name"] == FAKE_GPU.name
    assert loaded["gpu"]["l2_cache_bytes"] == FAKE_GPU.l2_cache_bytes
    assert loaded["timing"]["warmup"] == 2 and loaded["timing"]["repeats"] == 5
    assert loaded["grid"]["seqlens"] == [64, 128]
    assert loaded["grid"]["causal"] == [False, True]
    assert [item["name"] for item in loaded["implementations"]] == ["baracuda", "peer_a", "peer_b"]
    assert [(case["seqlen"], case["causal"]) for case in loaded["cases"]] == [
        (64, False),
        (64, True),
        (128, False),
        (128, True),
    ]

    for case in loaded["cases"]:
        assert case["batch"] * case["seqlen"] == SMALL_CONFIG.tokens
        assert case["heads"] * case["head_dim"] == bench.MODEL_WIDTH
        assert case["baracuda_plan"] == {"backend": "portable", "sku": "fake"}
        ours = case["results"]["baracuda"]
        assert ours["status"] == "ok"
        assert ours["median_ms"] == 2.0
        assert ours["runs"] == 5
        assert ours["tflops"] == pytest.approx(case["flops"] / 2.0e-3 / 1e12)
        if case["causal"]:
            assert case["results"]["peer_b"]["status"] == "unsupported"
            assert case["best_peer"] == "peer_a"
            assert case["speedup_vs_best_peer"] == pytest.approx(1.5)
        else:
            assert case["best_peer"] == "peer_b"
            assert case["speedup_vs_best_peer"] == pytest.approx(0.5)

    assert "[4/4] f16 D=64 H=32 B=2 S=128 causal" in progress

    table = bench.format_table(loaded).splitlines()
    assert table[0].split() == [
        "dtype",
        "D",
        "H",
        "B",
        "S",
        "causal",
        "baracuda",
        "ms",
        "TFLOP/s",
        "peer_a",
        "ms",
        "TFLOP/s",
        "peer_b",
        "ms",
        "TFLOP/s",
        "speedup",
    ]
    assert len(table) == 2 + len(loaded["cases"])
    assert table[3].split()[-1] == "1.50x"
    assert "unsupported" in table[3]
    assert table[2].split()[-1] == "0.50x"


def test_table_without_peers_has_no_speedup():
    clock = FakeClock()
    document, _ = run_fake_grid(SMALL_CONFIG, [fake_implementation("baracuda", clock)], clock)
    header = bench.format_table(document).splitlines()[0]
    assert "speedup" not in header
    assert all(case["speedup_vs_best_peer"] is None for case in document["cases"])


def test_dtype_without_array_support_is_skipped():
    fake_cupy = types.SimpleNamespace(
        float16=np.float16,
        float32=np.float32,
        float64=np.float64,
        random=types.SimpleNamespace(seed=lambda seed: None),
    )
    clock = FakeClock()
    config = bench.BenchConfig(
        dtypes=("bf16",), head_dims=(64,), seqlens=(128,), causal=(False,), tokens=128
    )
    document, _ = run_fake_grid(
        config, [fake_implementation("baracuda", clock)], clock, arrays=bench.CupyArrays(fake_cupy)
    )
    (case,) = document["cases"]
    assert case["results"]["baracuda"] == {
        "status": "skipped",
        "error": "bf16 inputs need torch (CuPy has no bf16 dtype)",
    }


def test_interrupt_keeps_measured_cases():
    clock = FakeClock()

    def interrupt_second_case(case, call):
        return KeyboardInterrupt() if case.seqlen == 128 else None

    implementations = [fake_implementation("baracuda", clock, fail=interrupt_second_case)]
    document, progress = run_fake_grid(SMALL_CONFIG, implementations, clock)
    assert document["complete"] is False
    assert [case["seqlen"] for case in document["cases"]] == [64, 64]
    assert "interrupted after 2 of 4 cases" in progress


# ---------------------------------------------------------------------------------
# On a GPU: one small case through the real command
# ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_bench_smoke_on_gpu(tmp_path, capsys):
    out = tmp_path / "results" / "smoke.json"
    argv = ["bench", "--dtypes", "f16", "--head-dims", "64", "--seqlens", "512"]
    argv += ["--causal", "yes", "--tokens", "1k", "--warmup", "2", "--repeats", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"results written to {out}" in capsys.readouterr().out

    document = json.loads(out.read_text())
    assert document["complete"] is True
    assert document["gpu"]["name"]
    (case,) = document["cases"]
    assert (case["batch"], case["heads"], case["causal"]) == (2, 32, True)
    ours = case["results"]["baracuda"]
    assert ours["status"] == "ok", ours
    assert 0 < ours["min_ms"] <= ours["median_ms"] <= ours["p90_ms"]
    assert case["results"]["torch_flash"]["status"] == "ok"
    assert case["results"]["torch_cudnn"]["status"] in ("ok", "unsupported")


@pytest.mark.parametrize("text,version", [
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  "
     "(dvs-builder@U22-I3-AF03-09-1)  Tue Sep 23 09:33:45 UTC 2025\n", "580.95.05"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC "
     "2024\n", "535.183.01"),
    ("no version here\n", None),
])
def test_driver_version_of_proc_text(text, version):
    assert bench.driver_version_of(text) == version
