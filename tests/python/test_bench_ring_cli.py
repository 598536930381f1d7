"""CPU tests of the ring benchmark, ``python -m baracuda bench ring``.

The grid, the arithmetic, the records, the table and the JSON are pure functions, checked
against the recorded H200 documents; a rank's measurements run in-process on fakes (host
tensors, ``FakeCuda``, a fake ``baracuda``, a fake PyTorch context parallelism, a rank of one)
and on two ranks of :func:`baracuda._launch.spawn` over gloo.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import types

import pytest
from _bench_fakes import (
    FAKE_GPU,
    FAKE_TORCH,
    FakeCuda,
    FakeUnsupportedError,
    cpu_arrays,
    header,
    parse,
    recorded,
)
from baracuda import _bench_common as common
from baracuda import _bench_ring as ring
from baracuda import _launch
from baracuda.__main__ import main

KIBI = 1024
RECORDED = {
    name: recorded(f"nvidia-h200-{name}")
    for name in ("x2-2026-11-23-ring", "2026-12-02-ring-world-size-1")
}


def parse_ring(argv=""):
    """Parse ``python -m baracuda bench ring <argv>`` and resolve its configuration."""
    return ring.resolve_ring_config(parse("bench", "ring", *argv.split()))


def problem(*, dtype="f32", chunk=64, heads=4, heads_k=2, head_dim=8):
    return ring.Problem(dtype, chunk, heads, heads_k, head_dim)


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
    monkeypatch.setattr(common, "probe_gpu", lambda: probed.append(True) or FAKE_GPU)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "ring", *argv.split()]) == 2
    assert capsys.readouterr().err.splitlines() == [f"baracuda bench ring: {message}"]
    # Options are checked before the probe; the world size against the GPUs it found.
    assert (probed, list(tmp_path.iterdir())) == ([True] if "world-size" in argv else [], [])


@pytest.mark.parametrize(
    ("requested", "devices", "expected"), [(None, 0, 1), (None, 1, 1), (None, 8, 8), (2, 4, 2)]
)
def test_world_size(requested, devices, expected):
    assert ring.resolve_world_size(requested, devices) == expected


FAILURE = "rank 0 failed:\nTraceback ...\nRuntimeError: boom"


def fake_command(monkeypatch, *, fail_after=None):
    """Run ``bench ring`` on a fake GPU; rank 0 answers every item (or fails after some)."""
    monkeypatch.setattr(common, "probe_gpu", lambda: FAKE_GPU)
    monkeypatch.setattr(common, "import_torch", lambda program, why: FAKE_TORCH)
    seen = {}

    def fake_spawn(fn, world_size, args, *, timeout, on_message, backend, env):
        (setup,) = args
        seen.update(fn=fn, world_size=world_size, setup=setup, backend=backend, env=env)
        for index, _item in enumerate(setup.items):
            if index == fail_after:
                raise _launch.LaunchError(FAILURE)
            result = ring.summarize_ranks([2.0] * 3, [2.0], 2, 10**9)
            on_message(0, ("item", index, {"result": result, "plan": {"backend": "b", "sku": "s"}}))

    monkeypatch.setattr(_launch, "spawn", fake_spawn)
    return seen


def test_command_runs_the_grid_and_writes_json(monkeypatch, capsys, tmp_path):
    seen = fake_command(monkeypatch)
    out = tmp_path / "results" / "ring.json"
    assert main(["bench", "ring", "--quick", "--max-seconds", "100", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"results written to {out}" in captured.out and "kept" in captured.out.splitlines()[0]
    assert "one GPU: the ring runs with world size 1, without NCCL" in captured.err
    setup = seen["setup"]
    assert (seen["world_size"], seen["fn"], seen["backend"]) == (1, ring.run_rank, "gloo")
    assert seen["env"]["NCCL_NVLS_ENABLE"] == "0" and 0 < setup.deadline - time.time() <= 100
    assert (setup.peers, setup.warmup, setup.repeats) == (False, 2, 10)
    assert not any(isinstance(item, ring.TorchCpCase) for item in setup.items)
    document = json.loads(out.read_text())
    assert (document["complete"], document["world_size"]) == (True, 1)
    assert document["peers"]["enabled"] is False
    assert document["peers"]["reason"] == "it needs at least 2 GPUs (world size 1)"
    software = [document["software"][key] for key in ("torch", "torch_nccl", "nccl")]
    assert software == ["0.0-fake", "2.28.3", None]
    assert (len(document["records"]), len(document["flash_steps"])) == (2 * 3 * 2, 2)
    assert all(record["ring"]["status"] == "ok" for record in document["records"])


def test_command_reports_a_rank_failure(monkeypatch, capsys, tmp_path):
    fake_command(monkeypatch, fail_after=3)
    out = tmp_path / "ring.json"
    assert main(["bench", "ring", "--chunks", "1k", "--out", str(out)]) == 1
    assert f"baracuda bench ring: {FAILURE}" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert (document["complete"], document["failures"]) == (False, [FAILURE])
    assert len(document["records"]) == 2
    assert {entry["reason"] for entry in document["skipped"]} == {"a rank failed"}
    assert len(document["skipped"]) == 1 + 3 * 2 - 3


def test_grid_subsets_and_labels():
    config = parse_ring("--chunks 2k --dtypes f16,bf16 --cases noncausal --schedules serial")
    items = ring.work_items(config, torch_cp=True)
    kinds = ("FlashStep", "RingCase", "TorchCpCase", "TorchCpCase")
    expected = [(kind, dtype) for dtype in ("f16", "bf16") for kind in kinds]
    assert [(type(item).__name__, item.problem.dtype) for item in items] == expected
    assert len(ring.work_items(config, torch_cp=False)) == 4
    assert [item.label() for item in items[:4]] == [
        "f16 chunk 2k H=32 Hk=8 D=128 flash step (rank 0)",
        "f16 chunk 2k H=32 Hk=8 D=128 noncausal serial",
        "f16 chunk 2k H=32 Hk=8 D=128 noncausal torch_cp_cudnn",
        "f16 chunk 2k H=32 Hk=8 D=128 noncausal torch_cp_flash",
    ]
    zigzag = ring.RingCase(problem(chunk=8 * KIBI), "causal-zigzag", "overlapped")
    assert (zigzag.causal, zigzag.layout) == (True, "zigzag")
    assert zigzag.label() == "f32 chunk 8k H=4 Hk=2 D=8 causal-zigzag overlapped"


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
    assert ring.meets_target(record) is expected


@pytest.mark.parametrize(
    ("call_s", "expected"), [(0.001, 50), (0.1, 30), (0.7, 5), (3.5, 5), (0.0, 50)]
)
def test_adaptive_count(call_s, expected):
    assert ring.adaptive_count(call_s, target_s=3.0, minimum=5, maximum=50) == expected


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
    assert ring.stop_reason(**{name: name in flags for name in names}) == expected


def collect(config, world_size, parts, *, peers_reason=None, stop_reason=None):
    """Feed rank 0's ``parts(item)`` for every item to a collector; the document, the
    progress text and the number of writes."""
    items = ring.work_items(config, torch_cp=peers_reason is None)
    document = ring.build_ring_document(
        config, header(ring.SCHEMA), world_size=world_size, peers_reason=peers_reason
    )
    writes, progress = [], io.StringIO()
    collector = ring.RingCollector(
        items, world_size, document, write=lambda: writes.append(1), progress=progress
    )
    collector(0, ("setup", {"torch_cp": {"ready": peers_reason is None, "reason": None}}))
    for index, item in enumerate(items):
        part = parts(item)
        if part is not None:
            collector(0, ("item", index, part))
    collector.finish(stop_reason=stop_reason)
    return document, progress.getvalue(), len(writes)


@pytest.mark.parametrize(
    ("name", "met"), [(name, met) for name, met in zip(RECORDED, ("6 of 9", "0 of 3"), strict=True)]
)
def test_the_recorded_documents_come_back_from_their_parts(name, met):
    """Rank 0's parts of each recorded measurement, through the collector, give the recorded
    document: its settings, entries, references, fractions kept and verdicts."""
    recorded = RECORDED[name]
    timing = {key: recorded["timing"][key] for key in ("warmup", "repeats", "max_seconds")}
    timing = {key: None if value == "adaptive" else value for key, value in timing.items()}
    config = ring.RingBenchConfig(chunks=tuple(recorded["config"]["chunks"]), **timing)
    parts = {}
    for e in recorded["flash_steps"]:
        parts[e["chunk"]] = {"result": e["result"], "plan": e["plan"]}
    for e in recorded["records"]:
        parts[e["chunk"], e["case"], e["schedule"]] = {"result": e["ring"], "plan": e["plan"]}
    for e in recorded["torch_cp"]:
        parts[e["chunk"], e["causal"], e["peer"]] = {k: e[k] for k in ("result", "kv_heads")}

    def part(item):
        keys = {"RingCase": ("case", "schedule"), "TorchCpCase": ("causal", "peer")}
        extra = [getattr(item, key) for key in keys.get(type(item).__name__, ())]
        return parts[item.problem.chunk, *extra] if extra else parts[item.problem.chunk]

    world_size, reason = recorded["world_size"], recorded["peers"]["reason"]
    document, progress, writes = collect(config, world_size, part, peers_reason=reason)
    assert set(document) == set(recorded)
    for key in set(recorded) - {"date", "timestamp", "gpu", "software", "setup"}:  # the run's own
        assert document[key] == recorded[key], key
    total = len(ring.work_items(config, torch_cp=reason is None))
    assert writes == 1 + total + 1  # the setup, each measurement, the end
    first = recorded["flash_steps"][0]["result"]
    flash = f"{first['median_ms']:.3f} ms, {first['tflops']:.1f} TFLOP/s ("
    prefix = f"[1/{total}] bf16 chunk 1k H=32 Hk=8 D=128 flash step (rank 0): "
    assert progress.startswith(prefix + flash)
    assert "TFLOP/s per GPU" in progress and progress.count("\n") == total

    table = ring.format_ring_table(document).splitlines()
    peers = " cp cudnn TF/s/GPU cp flash TF/s/GPU" if reason is None else ""
    headings = f"dtype chunk S case schedule ring ms TF/s/GPU flash TF/s kept{peers}"
    assert table[0].split() == headings.split()
    assert (set(table[1]), len(table)) == ({"-", " "}, 2 + len(recorded["records"]))
    record = recorded["records"][0]
    cells = [record["ring"]["median_ms"], record["ring"]["tflops"], record["flash_step_tflops"]]
    row = f"bf16 1k {world_size}k noncausal overlapped {cells[0]:.3f} {cells[1]:.1f} {cells[2]:.1f}"
    row += f" {record['fraction_kept']:.0%}"
    row += "".join(f" {record['peers'][name]['tflops']:.1f}" for name in record["peers"])
    assert table[2].split() == row.split()
    out = io.StringIO()
    ring.print_ring_table(document, out)
    assert f"target (overlapped, chunk >= 8k, kept >= 90%): met by {met} records" in out.getvalue()


def test_failures_skips_and_no_peers_are_reported():
    config = parse_ring("--chunks 1k --cases noncausal --schedules overlapped")
    refusal = {"status": "unsupported", "error": "FakeUnsupportedError: why", "rank": 0}
    parts = lambda item: {"result": refusal} if isinstance(item, ring.FlashStep) else None  # noqa: E731
    stop = ring.STOP_BUDGET
    document, _, _ = collect(config, 1, parts, peers_reason="--no-peers", stop_reason=stop)
    label = "bf16 chunk 1k H=32 Hk=8 D=128 noncausal overlapped"
    assert (document["complete"], document["records"]) == (False, [])
    assert document["skipped"] == [{"item": label, "reason": "time budget spent"}]
    out = io.StringIO()
    ring.print_ring_table(document, out)
    assert out.getvalue().splitlines()[-4:] == [
        "world size 1: the ring ran on one GPU, without NCCL",
        "torch context parallelism not timed: --no-peers",
        "bf16 chunk 1k flash step: unsupported: FakeUnsupportedError: why",
        f"skipped {label}: time budget spent",
    ]


class FakeRingPlan:
    """Records every run; each run advances the fake clock."""

    kv_scratch_elements = 2 * 4 * 64 * 8
    accumulator_scratch_bytes = 4 * 64 * (8 + 2) * 4
    backend = "portable"
    sku = types.SimpleNamespace(name="ring_attention.fake")

    def __init__(self, cuda, duration_ms, sleep_s):
        self.cuda, self.duration_ms, self.sleep_s = cuda, duration_ms, sleep_s
        self.runs, self.checked, self.closed = [], [], False

    def can_implement(self, *args, **kwargs):
        self.checked.append((args, kwargs))

    def run(self, *args, **kwargs):
        assert not self.closed
        self.runs.append((args, kwargs))
        time.sleep(self.sleep_s)
        self.cuda.now_ms += self.duration_ms

    def close(self):
        self.closed = True


def fake_baracuda(cuda, *, duration_ms=2.0, sleep_s=0.0, refuse=False):
    """A ``baracuda`` with ring plans (refused with ``refuse``) and flash attention on ``cuda``."""
    selected, flash_calls = [], []

    def select(descriptor):
        if refuse:
            raise FakeUnsupportedError("zigzag needs an even chunk")
        selected.append((descriptor, FakeRingPlan(cuda, duration_ms, sleep_s)))
        return selected[-1][1]

    def flash_attention(q, k, v, *, out):
        flash_calls.append((q, k, v, out))
        cuda.now_ms += duration_ms

    @contextlib.contextmanager
    def flash_select(descriptor):
        yield types.SimpleNamespace(backend="portable", sku=types.SimpleNamespace(name="f.fake"))

    return types.SimpleNamespace(
        RingAttentionDescriptor=lambda *args, **kwargs: (args, kwargs),
        RingAttentionPlan=types.SimpleNamespace(select=select),
        FlashSdpaDescriptor=lambda *args, **kwargs: (args, kwargs),
        FlashSdpaPlan=types.SimpleNamespace(select=flash_select),
        flash_attention=flash_attention,
        BaracudaError=Exception,
        UnsupportedError=FakeUnsupportedError,
        selected=selected,
        flash_calls=flash_calls,
    )


class CountingArrays(common.TorchArrays):
    """Host tensors that count allocations."""

    def __init__(self):
        self.__dict__.update(cpu_arrays().__dict__, allocations=0)

    def randn(self, shape, dtype):
        self.allocations += 1
        return super().randn(shape, dtype)

    def empty(self, shape, dtype):
        self.allocations += 1
        return super().empty(shape, dtype)


def solo_rank():
    """A rank of one: every collective returns this rank's own value."""
    same = lambda value: value  # noqa: E731
    return types.SimpleNamespace(
        rank=0, world_size=1, min=same, all_ok=same, max=list, gather=lambda obj: [obj]
    )


def rank_context(rank=None, *, warmup=1, repeats=4, baracuda=None, cuda=None):
    cuda = cuda or FakeCuda()
    setup = ring.WorkerSetup(items=(), warmup=warmup, repeats=repeats, l2_cache_bytes=0)
    baracuda = baracuda or fake_baracuda(cuda)
    return ring.RankContext(
        rank or solo_rank(), setup, baracuda, CountingArrays(), cuda, comm="comm"
    )


def test_ring_measurement_allocates_once_and_rotates_inputs():
    cuda = FakeCuda()
    baracuda = fake_baracuda(cuda, duration_ms=2.0)
    ctx = rank_context(baracuda=baracuda, cuda=cuda, warmup=1, repeats=4)
    part = ring.measure_ring(ctx, ring.RingCase(problem(), "causal-zigzag", "serial"))
    result = part["result"]
    assert [result[key] for key in ("status", "median_ms", "runs", "warmup")] == ["ok", 2.0, 4, 1]
    assert result["per_rank_median_ms"] == [2.0]
    assert part["plan"] == {"backend": "portable", "sku": "ring_attention.fake"}
    ((args, kwargs), plan) = baracuda.selected[0]
    assert (len(baracuda.selected), args, plan.closed) == (1, (1, 4, 64, 64, 8), True)
    assert kwargs == dict(
        num_heads_k=2, is_causal=True, element="f32", layout="zigzag", schedule="serial"
    )
    sets = common.sets_to_exceed_l2((4 + 2 * 2) * 64 * 8 * 4, 0)
    # 3 random tensors per set, then y, lse, two K/V scratch buffers and the accumulators.
    assert ctx.arrays.allocations == 3 * sets + 5
    # Cold call, probe, warm-up (at least one per set), then the timed calls.
    assert len(plan.runs) == 1 + 1 + sets + 4 and len(plan.checked) == 1
    assert len({id(args[0]) for args, _ in plan.runs}) == sets
    assert len({id(args[1]) for args, _ in plan.runs}) == 1  # one y for every call
    for (q, _y, kv_a, kv_b, accumulators), kwargs in plan.runs:
        shapes = [tuple(tensor.shape) for tensor in (q, kwargs["k"], kwargs["v"], kwargs["lse"])]
        assert shapes == [(1, 4, 64, 8), (1, 2, 64, 8), (1, 2, 64, 8), (1, 4, 64)]
        assert (str(kwargs["lse"].dtype), kwargs["comm"]) == ("torch.float32", "comm")
        assert kv_a.numel() == kv_b.numel() == FakeRingPlan.kv_scratch_elements
        assert accumulators.numel() * 4 >= FakeRingPlan.accumulator_scratch_bytes
        assert q.count_nonzero() == q.numel()


def test_a_refused_ring_case_is_recorded_with_its_rank():
    ctx = rank_context(baracuda=fake_baracuda(FakeCuda(), refuse=True))
    part = ring.measure_ring(ctx, ring.RingCase(problem(), "noncausal", "serial"))
    error = "FakeUnsupportedError: zigzag needs an even chunk"
    assert part == {"result": {"status": "unsupported", "error": error, "rank": 0}, "plan": None}


def test_flash_step_runs_on_rank_zero_only():
    cuda = FakeCuda()
    baracuda = fake_baracuda(cuda, duration_ms=3.0)
    item = ring.FlashStep(problem())
    other = rank_context(types.SimpleNamespace(rank=1, world_size=2), baracuda=baracuda)
    assert (ring.measure_flash_step(other, item), baracuda.flash_calls) == (None, [])
    ctx = rank_context(baracuda=baracuda, cuda=cuda, warmup=0, repeats=3)
    part = ring.measure_flash_step(ctx, item)
    result = part["result"]
    assert (result["median_ms"], result["runs"], result["per_rank_median_ms"]) == (3.0, 3, [3.0])
    assert part["plan"] == {"backend": "portable", "sku": "f.fake"}
    shapes = [tuple(tensor.shape) for tensor in baracuda.flash_calls[0]]
    assert shapes == [(1, 4, 64, 8), (1, 2, 64, 8), (1, 2, 64, 8), (1, 4, 64, 8)]


def ring_on_fakes(rank, durations_ms, sleeps_s, refusing_rank, warmup, repeats):
    """One rank's measure_ring on the fakes; rank ``r`` takes ``durations_ms[r]`` per call."""
    cuda = FakeCuda()
    refuse = rank.rank == refusing_rank
    baracuda = fake_baracuda(
        cuda, duration_ms=durations_ms[rank.rank], sleep_s=sleeps_s[rank.rank], refuse=refuse
    )
    ctx = rank_context(rank, baracuda=baracuda, cuda=cuda, warmup=warmup, repeats=repeats)
    part = ring.measure_ring(ctx, ring.RingCase(problem(), "noncausal", "overlapped"))
    return part, len(baracuda.selected[0][1].runs) if baracuda.selected else 0


SLOWEST = {"median_ms": 3.0, "min_ms": 3.0, "runs": 4, "per_rank_median_ms": [2.0, 3.0]}
SKIPPED = {"status": "skipped", "error": "another rank could not set up this case", "rank": 0}


@pytest.mark.parametrize(
    ("durations_ms", "sleeps_s", "refusing_rank", "counts", "expected"),
    [
        ((2.0, 3.0), (0.0, 0.0), None, (1, 4), SLOWEST),
        ((2.0, 2.0), (0.0, 0.0), 1, (1, 4), SKIPPED),
        # The slowest probe (50 ms) sets the counts: 3 s of repeats, 1 s of warm-up.
        ((2.0, 2.0), (0.05, 0.0), None, (None, None), {"runs": 50, "warmup": 10}),
    ],
    ids=["slowest-rank-per-call", "one-rank-refuses", "adaptive-counts-agree"],
)
def test_two_ranks(durations_ms, sleeps_s, refusing_rank, counts, expected):
    pytest.importorskip("torch.distributed")
    args = (durations_ms, sleeps_s, refusing_rank, *counts)
    (part, runs), (other, other_runs) = _launch.spawn(ring_on_fakes, 2, args, timeout=60.0)
    assert other is None and runs == other_runs == (0 if refusing_rank else runs)
    assert {key: part["result"][key] for key in expected} == expected
    if "median_ms" in expected:
        per_gpu = ring.flops_per_gpu(problem(), 2, causal=False)
        assert part["result"]["tflops"] == pytest.approx(per_gpu / 3e-3 / 1e12)


class FakeContextParallel:
    """Stands in for PyTorch's API: context_parallel, sdpa_kernel, SDPA, the options."""

    def __init__(self, cuda, *, refuse_gqa=False, fail_with=None, options=True):
        self.cuda, self.refuse_gqa, self.fail_with = cuda, refuse_gqa, fail_with
        self.options = types.SimpleNamespace(enable_load_balance=True, rotate_method="ALL_GATHER")
        self.entered, self.exited, self.backends, self.calls = [], 0, [], []
        functional = types.SimpleNamespace(scaled_dot_product_attention=self.sdpa)
        backends = types.SimpleNamespace(CUDNN_ATTENTION="cudnn", FLASH_ATTENTION="flash")
        self.api = ring.TorchContextParallel(
            self.context_parallel,
            "fake",
            self.options if options else None,
            self.sdpa_kernel,
            backends,
            torch=types.SimpleNamespace(nn=types.SimpleNamespace(functional=functional)),
            mesh="mesh",
        )

    @contextlib.contextmanager
    def context_parallel(self, mesh, *, buffers, buffer_seq_dims, no_restore_buffers):
        shapes = [tuple(buffer.shape) for buffer in buffers]
        balance = self.options.enable_load_balance
        self.entered.append((mesh, shapes, buffer_seq_dims, len(no_restore_buffers), balance))
        yield
        self.exited += 1

    @contextlib.contextmanager
    def sdpa_kernel(self, backend):
        self.backends.append(backend)
        yield

    def sdpa(self, q, k, v, *, is_causal, **kwargs):
        balance = self.options.enable_load_balance
        self.calls.append((tuple(q.shape), tuple(k.shape), is_causal, kwargs, balance))
        if self.refuse_gqa and kwargs.get("enable_gqa"):
            raise RuntimeError("No available kernel. Aborting execution.")
        if self.fail_with is not None:
            raise self.fail_with
        self.cuda.now_ms += 5.0


def measure_cp(item_problem, causal, peer, **fake_options):
    """``measure_torch_cp`` on a rank of one over a FakeContextParallel; the payload and fake."""
    cuda = FakeCuda()
    fake = FakeContextParallel(cuda, **fake_options)
    ctx = rank_context(cuda=cuda, warmup=0, repeats=2)
    ctx.torch_cp = fake.api
    return ring.measure_torch_cp(ctx, ring.TorchCpCase(item_problem, causal, peer)), fake


def test_torch_cp_falls_back_to_expanded_kv_heads():
    payload, fake = measure_cp(problem(chunk=32), True, "torch_cp_flash", refuse_gqa=True)
    result = payload["result"]
    assert (result["status"], result["median_ms"], result["runs"]) == ("ok", 5.0, 2)
    assert payload["kv_heads"] == ring.KV_HEADS_EXPANDED
    note = payload["kv_heads_note"]
    assert note.startswith(f"{ring.KV_HEADS_NATIVE} refused: ")
    entry = ring.entry(ring.TorchCpCase(problem(chunk=32), True, "torch_cp_flash"), 1, payload)[1]
    assert (entry["kv_heads"], entry["kv_heads_note"]) == (ring.KV_HEADS_EXPANDED, note)
    # Two attempts, each entered and exited; global inputs of world_size * chunk tokens.
    assert fake.exited == len(fake.entered) == 2
    (mesh, native_shapes, seq_dims, no_restore, balance) = fake.entered[0]
    assert (mesh, balance, set(seq_dims), no_restore) == ("mesh", True, {2}, len(native_shapes))
    assert native_shapes[:3] == [(1, 4, 32, 8), (1, 2, 32, 8), (1, 2, 32, 8)]
    assert fake.entered[1][1][:3] == [(1, 4, 32, 8)] * 3
    assert (fake.backends, fake.calls[0][3]) == (["flash", "flash"], {"enable_gqa": True})
    assert all(call[2:] == (True, {}, True) for call in fake.calls[1:])
    assert fake.options.enable_load_balance is True  # restored after the block


def test_torch_cp_noncausal_turns_load_balancing_off_during_the_block():
    payload, fake = measure_cp(problem(heads_k=4), False, "torch_cp_cudnn")
    assert (payload["result"]["status"], payload["kv_heads"]) == ("ok", ring.KV_HEADS_SAME)
    assert "kv_heads_note" not in payload
    assert [entry[4] for entry in fake.entered] == [False] and fake.backends == ["cudnn"]
    assert all(call[3:] == ({}, False) for call in fake.calls)
    assert fake.options.enable_load_balance is True


def test_torch_cp_failure_is_recorded_and_the_block_exits():
    crash = RuntimeError("CUDA error: an illegal memory access")
    payload, fake = measure_cp(problem(), True, "torch_cp_cudnn", fail_with=crash)
    assert (payload["result"]["status"], payload["kv_heads"]) == ("error", ring.KV_HEADS_NATIVE)
    assert "illegal memory access" in payload["result"]["error"]
    assert fake.exited == len(fake.entered) == 1


def test_torch_cp_unavailable_reasons():
    ctx = rank_context()
    ctx.torch_cp_reason = "torch.distributed did not start: boom"
    item = ring.TorchCpCase(problem(), False, "torch_cp_cudnn")
    error = "torch.distributed did not start: boom"
    result = {"status": "unsupported", "error": error, "rank": 0}
    assert ring.measure_torch_cp(ctx, item) == {"result": result}
    payload, fake = measure_cp(problem(), True, "torch_cp_cudnn", options=False)
    assert payload["result"]["status"] == "unsupported" and fake.entered == []
    assert "enable_load_balance" in payload["result"]["error"]


def test_find_torch_cp_api_prefers_the_implementation_module():
    def context_parallel(mesh, **kwargs):
        return mesh

    def importer(modules):
        def import_module(name):
            if name not in modules:
                raise ModuleNotFoundError(name)
            return modules[name]

        return import_module

    kernel = types.SimpleNamespace(sdpa_kernel="kernel", SDPBackend="backends")
    attention = {ring.SDPA_KERNEL_MODULE: kernel}
    options = types.SimpleNamespace(enable_load_balance=True)
    implementation, older = ring.CP_IMPLEMENTATION_MODULES[1:]
    newer = types.SimpleNamespace(context_parallel=context_parallel, _cp_options=options)
    modules = {implementation: newer, older: types.SimpleNamespace(context_parallel=print)}
    api = ring.find_torch_cp_api(importer({**attention, **modules}))
    assert api == ring.TorchContextParallel(
        context_parallel, implementation, options, "kernel", "backends"
    )
    # Only the public name, as an alias object that is not itself callable.
    alias = types.SimpleNamespace(__value__=context_parallel)
    modules = {
        older: types.SimpleNamespace(context_parallel=types.ModuleType("shadowing")),
        ring.CP_PUBLIC_MODULE: types.SimpleNamespace(context_parallel=alias),
    }
    api = ring.find_torch_cp_api(importer({**attention, **modules}))
    assert (api.context_parallel, api.options) == (context_parallel, None)
    assert api.module == ring.CP_PUBLIC_MODULE
    public_without = importer({**attention, ring.CP_PUBLIC_MODULE: types.SimpleNamespace()})
    with pytest.raises(AttributeError, match="no callable context_parallel"):
        ring.find_torch_cp_api(public_without)
    with pytest.raises(ImportError):
        ring.find_torch_cp_api(importer({}))
    described = {"module": ring.CP_PUBLIC_MODULE, "rotate_method": None}
    assert api.describe() == {**described, "load_balance": "on for causal, off for non-causal"}
