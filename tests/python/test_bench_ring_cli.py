"""CPU tests of the ring benchmark, ``python -m baracuda bench ring``.

Nothing here needs a GPU. The grid, the arithmetic, the records, the table and the JSON are
pure functions; a rank's measurements run in-process on fakes (numpy arrays, a scripted
clock, a fake ``baracuda``, a fake PyTorch context parallelism and a rank of one), and, where
torch is installed, on two ranks of :func:`baracuda._launch.spawn` over gloo.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import time
import types
from pathlib import Path

import numpy as np
import pytest
from _bench_fakes import FAKE_GPU, FIXED_NOW, FakeClock, FakeTimer, NumpyArrays, parse
from baracuda import _bench_common, _bench_ring, _launch
from baracuda.__main__ import main

KIBI = 1024
DEFAULT_CHUNKS = (1 * KIBI, 2 * KIBI, 4 * KIBI, 8 * KIBI, 16 * KIBI, 32 * KIBI)
ALL_CASES = ("noncausal", "causal-contiguous", "causal-zigzag")
# Per chunk: the flash step, 3 cases x 2 schedules, 2 causal settings x 2 torch backends.
ITEMS_PER_CHUNK_WITH_PEERS = 1 + 3 * 2 + 2 * 2
SPAWN_TIMEOUT_S = 60.0


def parse_ring(*argv: str):
    """Parse ``python -m baracuda bench ring <argv>`` and resolve its configuration."""
    return _bench_ring.resolve_ring_config(parse("bench", "ring", *argv))


def small_problem(*, dtype="f32", chunk=64, heads=4, heads_k=2, head_dim=8):
    return _bench_ring.Problem(
        dtype=dtype, chunk=chunk, heads=heads, heads_k=heads_k, head_dim=head_dim
    )


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


RING_OPTIONS = "--chunks --dtypes --heads --heads-k --head-dim --world-size --warmup --repeats"
RING_OPTIONS += " --schedules --cases --no-peers --quick --out --max-seconds"


@pytest.mark.parametrize(
    ("argv", "listed"),
    [(["bench", "--help"], ["ring", "flash"]), (["bench", "ring", "--help"], RING_OPTIONS.split())],
)
def test_help_lists_the_targets_and_every_option(capsys, argv, listed):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in listed)


DEFAULTS = {
    "chunks": DEFAULT_CHUNKS,
    "dtypes": ("bf16",),
    "heads": 32,
    "heads_k": 8,
    "head_dim": 128,
    "cases": ALL_CASES,
    "schedules": ("overlapped", "serial"),
    "world_size": None,
    "warmup": None,
    "repeats": None,
    "peers": True,
    "max_seconds": None,
    "out": None,
}
EVERY_OPTION = (
    "--chunks 1k,32k --dtypes f16,bf16 --heads 16 --heads-k 4 --head-dim 64 --world-size 2"
    " --cases causal-zigzag,noncausal,causal-zigzag --schedules serial --warmup 0"
    " --repeats 7 --max-seconds 120.5 --out x/ring.json --no-peers"
)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("", {}),
        ("--quick", {"chunks": (1 * KIBI, 8 * KIBI), "warmup": 2, "repeats": 10}),
        ("--quick --repeats 3 --chunks 2k", {"chunks": (2 * KIBI,), "warmup": 2, "repeats": 3}),
        (
            "--chunks 1001 --cases noncausal,causal-contiguous",
            {"chunks": (1001,), "cases": ("noncausal", "causal-contiguous")},
        ),
        (
            EVERY_OPTION,
            {
                "chunks": (1024, 32768),
                "dtypes": ("f16", "bf16"),
                "heads": 16,
                "heads_k": 4,
                "head_dim": 64,
                "world_size": 2,
                "cases": ("causal-zigzag", "noncausal"),
                "schedules": ("serial",),
                "warmup": 0,
                "repeats": 7,
                "max_seconds": 120.5,
                "out": Path("x/ring.json"),
                "peers": False,
            },
        ),
    ],
    ids=["defaults", "quick", "quick-overridden", "odd-chunk-no-zigzag", "every-option"],
)
def test_options_quick_preset_and_defaults_resolve(argv, expected):
    args = parse("bench", "ring", *argv.split())
    assert (args.target, args.run) == ("ring", _bench_ring.run_ring)
    config = _bench_ring.resolve_ring_config(args)
    assert {name: getattr(config, name) for name in DEFAULTS} == {**DEFAULTS, **expected}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--chunks", "0", "positive integer"),
        ("--chunks", "1x", "positive integer"),
        ("--chunks", "1k,,2k", "positive integer"),
        ("--dtypes", "fp8", "unknown dtype 'fp8'"),
        (
            "--cases",
            "noncausal,zigzag",
            "unknown name 'zigzag' (expected one of noncausal, causal-contiguous, causal-zigzag)",
        ),
        ("--schedules", "parallel", "unknown name 'parallel'"),
        ("--heads", "0", "positive integer"),
        ("--world-size", "0", "positive integer"),
        ("--warmup", "-1", "non-negative integer"),
        ("--repeats", "0", "positive integer"),
        ("--max-seconds", "0", "positive number of seconds"),
        ("--max-seconds", "soon", "positive number of seconds"),
        ("--max-seconds", "nan", "positive number of seconds"),
    ],
)
def test_invalid_option_is_a_usage_error(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        parse("bench", "ring", option, value)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("--heads-k 5", "--heads-k must divide --heads (got H=32, Hk=5)"),
        (
            "--chunks 1k,1001",
            "the zigzag layout splits each chunk in two halves (got odd chunks [1001])",
        ),
        ("--world-size 2", "--world-size 2 needs 2 GPUs (got 1 visible)"),
    ],
)
def test_options_that_do_not_go_together(monkeypatch, capsys, tmp_path, argv, message):
    probed = []
    monkeypatch.setattr(_bench_common, "probe_gpu", lambda: probed.append(True) or FAKE_GPU)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "ring", *argv.split()]) == 2
    assert capsys.readouterr().err.splitlines() == [f"baracuda bench ring: {message}"]
    # Options are checked before the probe; the world size against the GPUs it found.
    assert probed == ([True] if "world-size" in argv else [])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("requested", "devices", "expected"), [(None, 0, 1), (None, 1, 1), (None, 8, 8), (2, 4, 2)]
)
def test_world_size(requested, devices, expected):
    assert _bench_ring.resolve_world_size(requested, devices) == expected


# ---------------------------------------------------------------------------------
# The whole command on a fake GPU, with the launcher replaced
# ---------------------------------------------------------------------------------


FAKE_TORCH = types.SimpleNamespace(
    __version__="0.0-fake",
    version=types.SimpleNamespace(cuda="13.0"),
    backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 91000)),
    cuda=types.SimpleNamespace(nccl=types.SimpleNamespace(version=lambda: (2, 28, 3))),
)
FAILURE = "rank 0 failed:\nTraceback ...\nRuntimeError: boom"


def fake_command(monkeypatch, *, fail_after=None, torch=FAKE_TORCH):
    """Run ``bench ring`` on a fake GPU; rank 0 answers every item (or fails after some)."""
    monkeypatch.setattr(_bench_common, "probe_gpu", lambda: FAKE_GPU)
    real_import = _bench_common.optional_import
    monkeypatch.setattr(
        _bench_common,
        "optional_import",
        lambda name: torch if name == "torch" else real_import(name),
    )
    seen = {}

    def fake_spawn(fn, world_size, args, *, timeout, on_message, backend, env):
        (setup,) = args
        seen.update(fn=fn, world_size=world_size, setup=setup, backend=backend, env=env)
        for index, _item in enumerate(setup.items):
            if index == fail_after:
                raise _launch.LaunchError(FAILURE)
            result = _bench_ring.summarize_ranks([2.0] * 3, [2.0], 2, 10**9)
            on_message(0, ("item", index, {"result": result, "plan": {"backend": "b", "sku": "s"}}))
        return [None] * world_size

    monkeypatch.setattr(_launch, "spawn", fake_spawn)
    return seen


def test_command_runs_the_grid_and_writes_json(monkeypatch, capsys, tmp_path):
    seen = fake_command(monkeypatch)
    out = tmp_path / "results" / "ring.json"
    status = main(["bench", "ring", "--quick", "--max-seconds", "100", "--out", str(out)])
    assert status == 0
    captured = capsys.readouterr()
    assert f"results written to {out}" in captured.out
    assert "kept" in captured.out.splitlines()[0]
    assert "one GPU: the ring runs with world size 1, without NCCL" in captured.err

    setup = seen["setup"]
    assert seen["world_size"] == 1 and seen["fn"] is _bench_ring.run_rank
    assert seen["backend"] == "gloo" and not setup.peers
    assert seen["env"]["NCCL_NVLS_ENABLE"] == "0"
    assert (setup.warmup, setup.repeats) == (2, 10)
    assert 0 < setup.deadline - time.time() <= 100
    assert not any(isinstance(item, _bench_ring.TorchCpCase) for item in setup.items)

    document = json.loads(out.read_text())
    assert document["complete"] is True
    assert document["world_size"] == 1
    assert document["peers"] == {
        "enabled": False,
        "reason": "it needs at least 2 GPUs (world size 1)",
        "implementations": document["peers"]["implementations"],
    }
    assert document["software"]["torch"] == "0.0-fake"
    assert document["software"]["torch_nccl"] == "2.28.3"
    assert document["timing"]["events"] == "torch.cuda.Event"
    assert len(document["records"]) == 2 * 3 * 2
    assert len(document["flash_steps"]) == 2
    assert all(record["ring"]["status"] == "ok" for record in document["records"])


def test_command_reports_a_rank_failure(monkeypatch, capsys, tmp_path):
    fake_command(monkeypatch, fail_after=3)
    out = tmp_path / "ring.json"
    assert main(["bench", "ring", "--chunks", "1k", "--out", str(out)]) == 1
    assert f"baracuda bench ring: {FAILURE}" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert document["complete"] is False
    assert document["failures"] == [FAILURE]
    assert len(document["records"]) == 2
    assert {entry["reason"] for entry in document["skipped"]} == {"a rank failed"}
    assert len(document["skipped"]) == 1 + 3 * 2 - 3


def test_command_without_torch_says_so(monkeypatch, capsys, tmp_path):
    fake_command(monkeypatch, torch=None)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "ring", "--quick"]) == 1
    assert capsys.readouterr().err == (
        "baracuda bench ring: needs torch (torch.multiprocessing starts the ranks, "
        "torch.distributed joins them).\n"
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------


def test_default_grid_order_and_size():
    config = parse_ring()
    items = _bench_ring.work_items(config, torch_cp=True)
    assert len(items) == len(DEFAULT_CHUNKS) * ITEMS_PER_CHUNK_WITH_PEERS
    first = items[:ITEMS_PER_CHUNK_WITH_PEERS]
    assert isinstance(first[0], _bench_ring.FlashStep)
    assert first[0].problem == _bench_ring.Problem(
        dtype="bf16", chunk=1024, heads=32, heads_k=8, head_dim=128, batch=1
    )
    assert [(item.case, item.schedule) for item in first[1:7]] == [
        (case, schedule) for case in ALL_CASES for schedule in ("overlapped", "serial")
    ]
    assert [(item.causal, item.layout) for item in first[1:7:2]] == [
        (False, "contiguous"),
        (True, "contiguous"),
        (True, "zigzag"),
    ]
    assert [(item.causal, item.peer) for item in first[7:]] == [
        (False, "torch_cp_cudnn"),
        (False, "torch_cp_flash"),
        (True, "torch_cp_cudnn"),
        (True, "torch_cp_flash"),
    ]
    assert [item.problem.chunk for item in items[::ITEMS_PER_CHUNK_WITH_PEERS]] == list(
        DEFAULT_CHUNKS
    )
    assert {item.problem for item in first} == {first[0].problem}


def test_grid_subsets_and_no_peers():
    config = parse_ring(
        "--chunks", "2k", "--dtypes", "f16,bf16", "--cases", "noncausal", "--schedules", "serial"
    )
    with_peers = _bench_ring.work_items(config, torch_cp=True)
    assert [type(item).__name__ for item in with_peers] == [
        "FlashStep",
        "RingCase",
        "TorchCpCase",
        "TorchCpCase",
    ] * 2
    assert [item.problem.dtype for item in with_peers] == ["f16"] * 4 + ["bf16"] * 4
    measured = [item for item in with_peers if not isinstance(item, _bench_ring.FlashStep)]
    assert not any(item.causal for item in measured)
    without = _bench_ring.work_items(config, torch_cp=False)
    assert not any(isinstance(item, _bench_ring.TorchCpCase) for item in without)
    assert len(without) == 4


def test_item_labels():
    problem = small_problem(dtype="bf16", chunk=8 * KIBI)
    flash = _bench_ring.FlashStep(problem)
    ring = _bench_ring.RingCase(problem, "causal-zigzag", "overlapped")
    peer = _bench_ring.TorchCpCase(problem, True, "torch_cp_flash")
    assert ring.label() == "bf16 chunk 8k H=4 Hk=2 D=8 causal-zigzag overlapped"
    assert peer.label() == "bf16 chunk 8k H=4 Hk=2 D=8 causal torch_cp_flash"
    assert flash.label() == "bf16 chunk 8k H=4 Hk=2 D=8 flash step (rank 0)"


# ---------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------


def test_flop_counts():
    problem = _bench_ring.Problem(dtype="bf16", chunk=8 * KIBI, heads=32, heads_k=8, head_dim=128)
    world_size = 2
    full = 4 * 1 * 32 * (16 * KIBI) ** 2 * 128
    assert _bench_ring.global_seqlen(problem, world_size) == 16 * KIBI
    assert _bench_ring.ring_flops(problem, world_size, causal=False) == full
    assert _bench_ring.ring_flops(problem, world_size, causal=True) == full // 2
    assert _bench_ring.flops_per_gpu(problem, world_size, causal=False) == full // 2
    assert _bench_ring.flops_per_gpu(problem, world_size, causal=True) == full // 4
    assert _bench_ring.step_flops(problem) == 4 * 32 * (8 * KIBI) ** 2 * 128
    # Non-causal, each GPU does world_size steps' worth of work.
    assert _bench_ring.flops_per_gpu(problem, 4, causal=False) == 4 * _bench_ring.step_flops(
        problem
    )


@pytest.mark.parametrize(
    ("ring", "flash", "expected"),
    [(45.0, 50.0, 0.9), (None, 50.0, None), (45.0, None, None), (45.0, 0.0, None)],
)
def test_fraction_kept(ring, flash, expected):
    assert _bench_ring.fraction_kept(ring, flash) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("schedule", "chunk", "kept", "expected"),
    [
        ("overlapped", 8 * KIBI, 0.90, True),
        ("overlapped", 32 * KIBI, 0.89, False),
        ("overlapped", 8 * KIBI, None, None),
        ("overlapped", 4 * KIBI, 0.99, None),
        ("serial", 16 * KIBI, 0.99, None),
    ],
)
def test_meets_target(schedule, chunk, kept, expected):
    record = {"schedule": schedule, "chunk": chunk, "fraction_kept": kept}
    assert _bench_ring.meets_target(record) is expected


@pytest.mark.parametrize(
    ("call_s", "expected"), [(0.001, 50), (0.1, 30), (0.7, 5), (3.5, 5), (0.0, 50)]
)
def test_adaptive_count(call_s, expected):
    assert _bench_ring.adaptive_count(call_s, target_s=3.0, minimum=5, maximum=50) == expected


# ---------------------------------------------------------------------------------
# Records, table and JSON from fabricated rank messages
# ---------------------------------------------------------------------------------


def ok_part(samples, *, medians=None, plan=None, **extra):
    """Rank 0's part of a measurement: the slowest rank's ``samples`` and each rank's median."""
    medians = medians or [float(np.median(samples))]
    part = {"result": _bench_ring.summarize_ranks(samples, medians, 2, 10**9), **extra}
    if plan is not None:
        part["plan"] = plan
    return part


def fake_ring_document(config, *, world_size=2, peers_reason=None):
    return _bench_ring.build_ring_document(
        config,
        FAKE_GPU,
        world_size=world_size,
        software={"baracuda": "test"},
        timer_method=FakeTimer.method,
        arrays_name=NumpyArrays.name,
        peers_reason=peers_reason,
        now=FIXED_NOW,
    )


def with_flops(part, item, world_size):
    """``part`` with the TFLOP/s of ``item``'s FLOPs (ok_part assumes 1 GFLOP)."""
    result = part["result"]
    if result["status"] == "ok":
        if isinstance(item, _bench_ring.FlashStep):
            flops = _bench_ring.step_flops(item.problem)
        else:
            flops = _bench_ring.flops_per_gpu(item.problem, world_size, causal=item.causal)
        result["tflops"] = flops / (result["median_ms"] / 1e3) / 1e12
    return part


def fabricated_run(tmp_path, *, peers=True):
    config = parse_ring(*"--chunks 4k,8k --cases noncausal,causal-zigzag".split())
    world_size = 2
    items = _bench_ring.work_items(config, torch_cp=peers)
    document = fake_ring_document(config, peers_reason=None if peers else "--no-peers")
    path = tmp_path / "new-dir" / "ring.json"
    writes = []
    progress = io.StringIO()

    def write():
        writes.append(len(document["records"]))
        return _bench_common.write_json(path, document)

    collector = _bench_ring.RingCollector(
        items, world_size, document, write=write, progress=progress
    )
    collector(0, ("setup", {"torch_cp": {"ready": peers, "reason": None}}))
    plan = {"backend": "portable", "sku": "ring.fake"}

    # Flash step 10 ms; ring: overlapped 12 ms at 4k and 20 ms at 8k per call (rank 1
    # slowest), serial twice that; torch: cudnn 25 ms, flash refused.
    def part_of(item):
        if isinstance(item, _bench_ring.FlashStep):
            return ok_part([10.0, 10.0, 10.0], plan={"backend": "portable", "sku": "f"})
        if isinstance(item, _bench_ring.RingCase):
            base = 12.0 if item.problem.chunk == 4 * KIBI else 20.0
            slowest = base * (1.0 if item.schedule == "overlapped" else 2.0)
            return ok_part([slowest] * 3, medians=[slowest - 1.0, slowest], plan=plan)
        if item.peer == "torch_cp_cudnn":
            return ok_part([25.0] * 3, kv_heads=_bench_ring.KV_HEADS_NATIVE)
        refusal = {"status": "unsupported", "error": "RuntimeError: No available kernel", "rank": 0}
        return {"result": refusal, "kv_heads": _bench_ring.KV_HEADS_EXPANDED}

    for index, item in enumerate(items):
        collector(0, ("item", index, with_flops(part_of(item), item, world_size)))
    collector.finish(stop_reason=None)
    return items, document, path, writes, progress.getvalue()


def test_collector_builds_records_and_writes_json(tmp_path):
    items, document, path, writes, progress = fabricated_run(tmp_path)
    loaded = json.loads(path.read_text())

    assert loaded["schema"] == "baracuda-bench-ring/1"
    assert loaded["complete"] is True
    assert loaded["world_size"] == 2
    assert loaded["date"] == "2025-01-02"
    assert loaded["gpu"]["name"] == FAKE_GPU.name
    assert loaded["timing"]["warmup"] == "adaptive"
    assert "slowest rank" in loaded["timing"]["statistic"]
    assert "slowest rank" in loaded["method"]
    assert loaded["config"]["chunks"] == [4096, 8192]
    assert loaded["setup"] == {"torch_cp": {"ready": True, "reason": None}}
    assert loaded["peers"]["enabled"] is True
    assert loaded["skipped"] == [] and loaded["failures"] == []
    # One write for the setup, one per finished measurement, one at the end.
    assert len(writes) == 1 + len(items) + 1

    step_4k = 4 * 32 * 4096**2 * 128
    assert [(entry["chunk"], entry["flops"]) for entry in loaded["flash_steps"]] == [
        (4096, step_4k),
        (8192, 4 * step_4k),
    ]
    assert loaded["flash_steps"][0]["result"]["tflops"] == pytest.approx(step_4k / 10e-3 / 1e12)
    assert loaded["flash_steps"][0]["plan"] == {"backend": "portable", "sku": "f"}
    records = loaded["records"]
    assert [(r["chunk"], r["case"], r["schedule"]) for r in records] == [
        (chunk, case, schedule)
        for chunk in (4096, 8192)
        for case in ("noncausal", "causal-zigzag")
        for schedule in ("overlapped", "serial")
    ]
    first = records[0]
    assert first["global_seqlen"] == 8192
    assert first["ring"]["median_ms"] == 12.0
    assert first["ring"]["per_rank_median_ms"] == [11.0, 12.0]
    assert first["plan"] == {"backend": "portable", "sku": "ring.fake"}
    per_gpu = 4 * 32 * 8192**2 * 128 // 2
    assert first["flops_per_gpu"] == per_gpu
    assert first["ring"]["tflops"] == pytest.approx(per_gpu / 12e-3 / 1e12)
    assert first["fraction_kept"] == pytest.approx(
        first["ring"]["tflops"] / first["flash_step_tflops"]
    )
    assert first["meets_target"] is None
    zigzag = records[2]
    assert zigzag["causal"] is True and zigzag["layout"] == "zigzag"
    assert zigzag["flops_per_gpu"] == per_gpu // 2
    assert zigzag["peers"]["torch_cp_cudnn"]["status"] == "ok"
    assert zigzag["peers"]["torch_cp_flash"] == {
        "status": "unsupported",
        "error": "RuntimeError: No available kernel",
    }
    # 8k per GPU, overlapped: the target applies; non-causal keeps 2*10/20 = 100%.
    eight_k = records[4]
    assert (eight_k["chunk"], eight_k["schedule"]) == (8192, "overlapped")
    assert eight_k["fraction_kept"] == pytest.approx(1.0)
    assert eight_k["meets_target"] is True
    assert records[6]["fraction_kept"] == pytest.approx(0.5)  # causal: half the FLOPs
    assert records[6]["meets_target"] is False
    assert records[5]["meets_target"] is None  # serial

    peers = loaded["torch_cp"]
    assert len(peers) == 2 * 2 * 2
    assert peers[0]["load_balance"] is False and peers[2]["load_balance"] is True
    assert peers[0]["kv_heads"] == _bench_ring.KV_HEADS_NATIVE
    assert peers[0]["backend"] == "CUDNN_ATTENTION"

    assert f"[1/{len(items)}] bf16 chunk 4k H=32 Hk=8 D=128 flash step (rank 0):" in progress
    assert "TFLOP/s per GPU" in progress
    assert progress.count("\n") == len(items)


def test_table_from_fabricated_document(tmp_path):
    _, document, _, _, _ = fabricated_run(tmp_path)
    table = _bench_ring.format_ring_table(document).splitlines()
    header = "dtype chunk S case schedule ring ms TF/s/GPU flash TF/s kept"
    assert table[0].split() == f"{header} cp cudnn TF/s/GPU cp flash TF/s/GPU".split()
    assert set(table[1]) == {"-", " "}
    assert len(table) == 2 + len(document["records"])
    row = table[2].split()
    ring_tflops = f"{document['records'][0]['ring']['tflops']:.1f}"
    assert row[:7] == ["bf16", "4k", "8k", "noncausal", "overlapped", "12.000", ring_tflops]
    assert row[8] == f"{document['records'][0]['fraction_kept']:.0%}"
    assert row[-1] == "unsupported"
    assert table[6].split()[8] == "100%"

    out = io.StringIO()
    _bench_ring.print_ring_table(document, out)
    text = out.getvalue()
    assert "target (overlapped, chunk >= 8k, kept >= 90%): met by 1 of 2 records" in text
    assert "causal torch_cp_flash: unsupported: RuntimeError: No available kernel" in text


def test_table_without_peers(tmp_path):
    _, document, _, _, _ = fabricated_run(tmp_path, peers=False)
    header = _bench_ring.format_ring_table(document).splitlines()[0]
    assert "cp" not in header.split()
    assert all(record["peers"] == {} for record in document["records"])
    out = io.StringIO()
    _bench_ring.print_ring_table(document, out)
    assert "torch context parallelism not timed: --no-peers" in out.getvalue()


def test_finish_records_skipped_measurements():
    config = parse_ring("--chunks", "1k", "--cases", "noncausal", "--schedules", "overlapped")
    items = _bench_ring.work_items(config, torch_cp=False)
    document = fake_ring_document(config, world_size=1, peers_reason="--no-peers")
    collector = _bench_ring.RingCollector(
        items, 1, document, write=lambda: None, progress=io.StringIO()
    )
    collector(0, ("item", 0, ok_part([1.0])))
    collector.finish(stop_reason=_bench_ring.STOP_BUDGET)
    assert document["complete"] is False
    assert document["skipped"] == [{"item": items[1].label(), "reason": "time budget spent"}]
    assert document["records"] == []
    out = io.StringIO()
    _bench_ring.print_ring_table(document, out)
    assert f"skipped {items[1].label()}: time budget spent" in out.getvalue()
    assert "world size 1: the ring ran on one GPU, without NCCL" in out.getvalue()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), None),
        (("budget",), "time budget spent"),
        (("interrupted", "budget"), "interrupted"),
        (("failed", "interrupted", "budget"), "a rank failed"),
    ],
)
def test_stop_reason(flags, expected):
    names = ("failed", "interrupted", "budget")
    assert _bench_ring.stop_reason(**{name: name in flags for name in names}) == expected


def test_default_output_path_has_ring_suffix():
    path = _bench_common.default_output_path(
        "NVIDIA H100 80GB HBM3", datetime.date(2025, 1, 2), target=_bench_ring.TARGET_NAME
    )
    assert path == Path("benchmarks/results/nvidia-h100-80gb-hbm3-2025-01-02-ring.json")


# ---------------------------------------------------------------------------------
# A rank's measurements on a fake baracuda
# ---------------------------------------------------------------------------------


class FakeBaracudaError(Exception):
    pass


class FakeUnsupportedError(FakeBaracudaError):
    pass


class FakeRingPlan:
    """Records every run; each run advances the rank's fake clock."""

    kv_scratch_elements = 2 * 4 * 64 * 8
    accumulator_scratch_bytes = 4 * 64 * (8 + 2) * 4
    backend = "portable"
    sku = types.SimpleNamespace(name="ring_attention.fake")

    def __init__(self, clock, duration_ms, sleep_s):
        self.clock = clock
        self.duration_ms = duration_ms
        self.sleep_s = sleep_s
        self.runs = []
        self.checked = []
        self.closed = False

    def can_implement(self, q, y, kv_scratch_a, kv_scratch_b, accumulator_scratch, **kwargs):
        self.checked.append((q, y, kv_scratch_a, kv_scratch_b, accumulator_scratch, kwargs))

    def run(self, q, y, kv_scratch_a, kv_scratch_b, accumulator_scratch, **kwargs):
        assert not self.closed
        self.runs.append((q, y, kv_scratch_a, kv_scratch_b, accumulator_scratch, kwargs))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.clock.now_ms += self.duration_ms

    def close(self):
        self.closed = True


def fake_baracuda(clock, *, duration_ms=2.0, sleep_s=0.0, refuse=False):
    selected = []

    def select(descriptor):
        if refuse:
            raise FakeUnsupportedError("zigzag needs an even chunk")
        plan = FakeRingPlan(clock, duration_ms, sleep_s)
        selected.append((descriptor, plan))
        return plan

    def descriptor(*args, **kwargs):
        return (args, kwargs)

    flash_calls = []

    def flash_attention(q, k, v, *, out):
        flash_calls.append((q, k, v, out))
        clock.now_ms += duration_ms
        return out

    @contextlib.contextmanager
    def flash_select(descriptor):
        yield types.SimpleNamespace(backend="portable", sku=types.SimpleNamespace(name="f.fake"))

    return types.SimpleNamespace(
        RingAttentionDescriptor=descriptor,
        RingAttentionPlan=types.SimpleNamespace(select=select),
        FlashSdpaDescriptor=descriptor,
        FlashSdpaPlan=types.SimpleNamespace(select=flash_select),
        flash_attention=flash_attention,
        BaracudaError=FakeBaracudaError,
        UnsupportedError=FakeUnsupportedError,
        selected=selected,
        flash_calls=flash_calls,
    )


class HashableArray(np.ndarray):
    """A numpy array hashed by identity, as torch tensors are (context_parallel keeps a set)."""

    __hash__ = object.__hash__


class CountingArrays(NumpyArrays):
    """numpy arrays that count allocations."""

    def __init__(self):
        super().__init__()
        self.allocations = 0

    def randn(self, shape, dtype):
        self.allocations += 1
        return super().randn(shape, dtype).view(HashableArray)

    def empty(self, shape, dtype):
        self.allocations += 1
        return super().empty(shape, dtype).view(HashableArray)


class SoloRank:
    """A rank of one: every collective returns this rank's own value."""

    rank = 0
    world_size = 1

    def min(self, value):
        return value

    def max(self, values):
        return list(values)

    def all_ok(self, ok):
        return ok

    def gather(self, obj):
        return [obj]

    def broadcast(self, obj):
        return obj


def rank_context(rank=None, *, warmup=1, repeats=4, baracuda=None, clock=None, comm="comm"):
    clock = clock or FakeClock()
    setup = _bench_ring.WorkerSetup(items=(), warmup=warmup, repeats=repeats, l2_cache_bytes=0)
    return _bench_ring.RankContext(
        rank=rank or SoloRank(),
        setup=setup,
        baracuda=baracuda or fake_baracuda(clock),
        arrays=CountingArrays(),
        timer=FakeTimer(clock),
        comm=comm,
    )


def test_ring_measurement_allocates_once_and_rotates_inputs():
    clock = FakeClock()
    baracuda = fake_baracuda(clock, duration_ms=2.0)
    ctx = rank_context(baracuda=baracuda, clock=clock, warmup=1, repeats=4)
    item = _bench_ring.RingCase(small_problem(), "causal-zigzag", "serial")

    part = _bench_ring.measure_ring(ctx, item)

    result = part["result"]
    assert result["status"] == "ok"
    assert (result["median_ms"], result["runs"], result["warmup"]) == (2.0, 4, 1)
    assert result["per_rank_median_ms"] == [2.0]
    assert part["plan"] == {"backend": "portable", "sku": "ring_attention.fake"}
    ((args, kwargs), plan) = baracuda.selected[0]
    assert len(baracuda.selected) == 1
    assert args == (1, 4, 64, 64, 8)
    assert kwargs == {
        "num_heads_k": 2,
        "is_causal": True,
        "element": "f32",
        "layout": "zigzag",
        "schedule": "serial",
    }
    assert plan.closed
    sets = _bench_common.sets_to_exceed_l2((4 + 2 * 2) * 64 * 8 * 4, 0)
    # 3 random tensors per set, then y, lse, two K/V scratch buffers and the accumulators.
    assert ctx.arrays.allocations == 3 * sets + 5
    # Cold call, probe, warm-up (at least one per set), then the timed calls.
    assert len(plan.runs) == 1 + 1 + sets + 4
    assert len({id(run[0]) for run in plan.runs}) == sets
    assert len({id(run[1]) for run in plan.runs}) == 1  # one y for every call
    for q, _y, kv_a, kv_b, accumulators, kwargs in plan.runs:
        assert q.shape == (1, 4, 64, 8)
        assert kwargs["k"].shape == kwargs["v"].shape == (1, 2, 64, 8)
        assert kwargs["lse"].shape == (1, 4, 64) and kwargs["lse"].dtype == np.float32
        assert kwargs["comm"] == "comm"
        assert kv_a.size == kv_b.size == FakeRingPlan.kv_scratch_elements
        assert accumulators.nbytes >= FakeRingPlan.accumulator_scratch_bytes
        assert np.count_nonzero(q) == q.size
    assert len(plan.checked) == 1


def test_a_refused_ring_case_is_recorded_with_its_rank():
    ctx = rank_context(baracuda=fake_baracuda(FakeClock(), refuse=True))
    part = _bench_ring.measure_ring(
        ctx, _bench_ring.RingCase(small_problem(), "noncausal", "serial")
    )
    assert part == {
        "result": {
            "status": "unsupported",
            "error": "FakeUnsupportedError: zigzag needs an even chunk",
            "rank": 0,
        },
        "plan": None,
    }


def test_flash_step_runs_on_rank_zero_only():
    clock = FakeClock()
    baracuda = fake_baracuda(clock, duration_ms=3.0)
    item = _bench_ring.FlashStep(small_problem())
    other = rank_context(types.SimpleNamespace(rank=1, world_size=2), baracuda=baracuda)
    assert _bench_ring.measure_flash_step(other, item) is None
    assert baracuda.flash_calls == []

    ctx = rank_context(baracuda=baracuda, clock=clock, warmup=0, repeats=3)
    part = _bench_ring.measure_flash_step(ctx, item)
    assert part["result"]["median_ms"] == 3.0 and part["result"]["runs"] == 3
    assert part["result"]["per_rank_median_ms"] == [3.0]
    assert part["plan"] == {"backend": "portable", "sku": "f.fake"}
    q, k, v, out = baracuda.flash_calls[0]
    assert q.shape == out.shape == (1, 4, 64, 8)
    assert k.shape == v.shape == (1, 2, 64, 8)


# ---------------------------------------------------------------------------------
# Two ranks of the launcher over gloo (torch on the CPU), on the fakes
# ---------------------------------------------------------------------------------


def ring_on_fakes(rank, durations_ms, sleeps_s, refusing_rank, warmup, repeats):
    """One rank's measure_ring on the fakes; rank ``r`` takes ``durations_ms[r]`` per call."""
    clock = FakeClock()
    baracuda = fake_baracuda(
        clock,
        duration_ms=durations_ms[rank.rank],
        sleep_s=sleeps_s[rank.rank],
        refuse=rank.rank == refusing_rank,
    )
    ctx = rank_context(rank, baracuda=baracuda, clock=clock, warmup=warmup, repeats=repeats)
    part = _bench_ring.measure_ring(
        ctx, _bench_ring.RingCase(small_problem(), "noncausal", "overlapped")
    )
    runs = len(baracuda.selected[0][1].runs) if baracuda.selected else 0
    return part, runs


def spawn_ring_on_fakes(
    *, durations_ms=(2.0, 2.0), sleeps_s=(0.0, 0.0), refusing_rank=None, warmup=1, repeats=4
):
    pytest.importorskip("torch.distributed")
    args = (durations_ms, sleeps_s, refusing_rank, warmup, repeats)
    return _launch.spawn(ring_on_fakes, 2, args, timeout=SPAWN_TIMEOUT_S)


def test_two_ranks_time_the_slowest_rank_per_call():
    (part, runs), (other, other_runs) = spawn_ring_on_fakes(durations_ms=(2.0, 3.0))
    assert other is None and runs == other_runs
    result = part["result"]
    assert (result["median_ms"], result["min_ms"], result["runs"]) == (3.0, 3.0, 4)
    assert result["per_rank_median_ms"] == [2.0, 3.0]
    per_gpu = _bench_ring.flops_per_gpu(small_problem(), 2, causal=False)
    assert result["tflops"] == pytest.approx(per_gpu / 3e-3 / 1e12)


def test_two_ranks_record_a_case_one_rank_refuses():
    (part, runs), (_, other_runs) = spawn_ring_on_fakes(refusing_rank=1)
    assert part["result"] == {
        "status": "skipped",
        "error": "another rank could not set up this case",
        "rank": 0,
    }
    assert runs == other_runs == 0


def test_two_ranks_agree_on_adaptive_counts(monkeypatch):
    (part, runs), (_, other_runs) = spawn_ring_on_fakes(
        sleeps_s=(0.05, 0.0), warmup=None, repeats=None
    )
    assert runs == other_runs
    # The slowest probe (50 ms) sets the counts: 3 s of repeats, 1 s of warm-up.
    assert part["result"]["runs"] == _bench_ring.MAX_ADAPTIVE_REPEATS
    assert part["result"]["warmup"] == _bench_ring.MAX_ADAPTIVE_WARMUP


# ---------------------------------------------------------------------------------
# PyTorch context parallelism on fakes
# ---------------------------------------------------------------------------------


class FakeContextParallel:
    """Stands in for PyTorch's API: context_parallel, sdpa_kernel, SDPA, the options."""

    def __init__(self, clock, *, refuse_gqa=False, fail_with=None):
        self.clock = clock
        self.refuse_gqa = refuse_gqa
        self.fail_with = fail_with
        self.options = types.SimpleNamespace(enable_load_balance=True, rotate_method="ALL_GATHER")
        self.entered = []
        self.exited = 0
        self.backends = []
        self.calls = []
        self.torch = types.SimpleNamespace(
            nn=types.SimpleNamespace(
                functional=types.SimpleNamespace(scaled_dot_product_attention=self.sdpa)
            )
        )

    @contextlib.contextmanager
    def context_parallel(self, mesh, *, buffers, buffer_seq_dims, no_restore_buffers):
        self.entered.append(
            (
                mesh,
                [buffer.shape for buffer in buffers],
                buffer_seq_dims,
                len(no_restore_buffers),
                self.options.enable_load_balance,
            )
        )
        yield
        self.exited += 1

    @contextlib.contextmanager
    def sdpa_kernel(self, backend):
        self.backends.append(backend)
        yield

    def sdpa(self, q, k, v, *, is_causal, **kwargs):
        self.calls.append((q.shape, k.shape, is_causal, kwargs, self.options.enable_load_balance))
        if self.refuse_gqa and kwargs.get("enable_gqa"):
            raise RuntimeError("No available kernel. Aborting execution.")
        if self.fail_with is not None:
            raise self.fail_with
        self.clock.now_ms += 5.0

    def api(self):
        return {
            "context_parallel": self.context_parallel,
            "sdpa_kernel": self.sdpa_kernel,
            "SDPBackend": types.SimpleNamespace(CUDNN_ATTENTION="cudnn", FLASH_ATTENTION="flash"),
            "options": self.options,
            "module": "fake",
        }


def measure_cp(problem, causal, peer, **fake_options):
    """``measure_torch_cp`` on a rank of one over a FakeContextParallel; the payload and fake."""
    clock = FakeClock()
    fake = FakeContextParallel(clock, **fake_options)
    ctx = rank_context(clock=clock, warmup=0, repeats=2)
    ctx.torch_cp = _bench_ring.TorchContextParallel(fake.torch, fake.api(), mesh="mesh")
    payload = _bench_ring.measure_torch_cp(ctx, _bench_ring.TorchCpCase(problem, causal, peer))
    return payload, fake


def test_torch_cp_falls_back_to_expanded_kv_heads():
    payload, fake = measure_cp(small_problem(chunk=32), True, "torch_cp_flash", refuse_gqa=True)
    assert payload["result"]["status"] == "ok"
    assert (payload["result"]["median_ms"], payload["result"]["runs"]) == (5.0, 2)
    assert payload["kv_heads"] == _bench_ring.KV_HEADS_EXPANDED
    assert payload["kv_heads_note"].startswith(f"{_bench_ring.KV_HEADS_NATIVE} refused: ")
    # Two attempts, each entered and exited; global inputs of world_size * chunk tokens.
    assert fake.exited == len(fake.entered) == 2
    (mesh, native_shapes, seq_dims, no_restore, balance) = fake.entered[0]
    assert mesh == "mesh" and balance is True
    assert native_shapes[:3] == [(1, 4, 32, 8), (1, 2, 32, 8), (1, 2, 32, 8)]
    assert set(seq_dims) == {2} and no_restore == len(native_shapes)
    assert fake.entered[1][1][:3] == [(1, 4, 32, 8)] * 3
    assert fake.backends == ["flash", "flash"]
    assert fake.calls[0][3] == {"enable_gqa": True}
    assert all(call[3] == {} and call[2] is True and call[4] is True for call in fake.calls[1:])
    # Load balancing is restored after the block.
    assert fake.options.enable_load_balance is True


def test_torch_cp_noncausal_turns_load_balancing_off_during_the_block():
    payload, fake = measure_cp(small_problem(heads_k=4), False, "torch_cp_cudnn")
    assert payload["result"]["status"] == "ok"
    assert payload["kv_heads"] == _bench_ring.KV_HEADS_SAME
    assert "kv_heads_note" not in payload
    assert [entry[4] for entry in fake.entered] == [False]
    assert all(call[4] is False and call[3] == {} for call in fake.calls)
    assert fake.options.enable_load_balance is True
    assert fake.backends == ["cudnn"]


def test_torch_cp_failure_is_recorded_and_the_block_exits():
    crash = RuntimeError("CUDA error: an illegal memory access")
    payload, fake = measure_cp(small_problem(), True, "torch_cp_cudnn", fail_with=crash)
    assert payload["result"]["status"] == "error"
    assert "illegal memory access" in payload["result"]["error"]
    assert payload["kv_heads"] == _bench_ring.KV_HEADS_NATIVE
    assert fake.exited == len(fake.entered) == 1


def fake_importer(modules):
    """``import_module`` over a dict of fake modules; others raise ModuleNotFoundError."""

    def import_module(name):
        if name not in modules:
            raise ModuleNotFoundError(name)
        return modules[name]

    return import_module


def test_find_torch_cp_api_prefers_the_implementation_module():
    attention = types.SimpleNamespace(sdpa_kernel="kernel", SDPBackend="backends")

    def context_parallel(mesh, **kwargs):
        return mesh

    options = types.SimpleNamespace(enable_load_balance=True)
    implementation, older, public = _bench_ring.CP_IMPLEMENTATION_MODULES[1:] + (
        _bench_ring.CP_PUBLIC_MODULE,
    )
    api = _bench_ring.find_torch_cp_api(
        fake_importer(
            {
                _bench_ring.SDPA_KERNEL_MODULE: attention,
                implementation: types.SimpleNamespace(
                    context_parallel=context_parallel, _cp_options=options
                ),
                older: types.SimpleNamespace(context_parallel=lambda mesh: None),
            }
        )
    )
    assert api["context_parallel"] is context_parallel
    assert api["options"] is options
    assert api["module"] == implementation
    assert (api["sdpa_kernel"], api["SDPBackend"]) == ("kernel", "backends")

    # Only the public name, as an alias object that is not itself callable.
    alias = types.SimpleNamespace(__value__=context_parallel)
    api = _bench_ring.find_torch_cp_api(
        fake_importer(
            {
                _bench_ring.SDPA_KERNEL_MODULE: attention,
                older: types.SimpleNamespace(context_parallel=types.ModuleType("shadowing")),
                public: types.SimpleNamespace(context_parallel=alias),
            }
        )
    )
    assert api["context_parallel"] is context_parallel
    assert api["options"] is None and api["module"] == public

    with pytest.raises(AttributeError, match="no callable context_parallel"):
        _bench_ring.find_torch_cp_api(
            fake_importer(
                {
                    _bench_ring.SDPA_KERNEL_MODULE: attention,
                    public: types.SimpleNamespace(),
                }
            )
        )
    with pytest.raises(ImportError):
        _bench_ring.find_torch_cp_api(fake_importer({}))


def test_torch_cp_unavailable_reasons():
    clock = FakeClock()
    ctx = rank_context(clock=clock)
    ctx.torch_cp_reason = "torch.distributed did not start: boom"
    item = _bench_ring.TorchCpCase(small_problem(), False, "torch_cp_cudnn")
    assert _bench_ring.measure_torch_cp(ctx, item) == {
        "result": {
            "status": "unsupported",
            "error": "torch.distributed did not start: boom",
            "rank": 0,
        }
    }
    fake = FakeContextParallel(clock)
    api = dict(fake.api(), options=None)
    ctx.torch_cp = _bench_ring.TorchContextParallel(fake.torch, api, mesh="mesh")
    causal = _bench_ring.TorchCpCase(small_problem(), True, "torch_cp_cudnn")
    result = _bench_ring.measure_torch_cp(ctx, causal)["result"]
    assert result["status"] == "unsupported"
    assert "enable_load_balance" in result["error"]
    assert fake.entered == []
