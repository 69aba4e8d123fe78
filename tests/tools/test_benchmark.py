"""`tools/benchmark.py eval|text|train`: stage timing, isolated peak-RSS runs, the cases on the tiny config, tables."""

import json
import os
import platform
import re
import signal

import pytest
import torch
from torch import nn

from openseed.benchmarks import common as benchmark_common
from openseed.benchmarks import train as benchmark_train
from openseed.benchmarks.common import StageTimer, run_isolated, timed_runs
from openseed.benchmarks.eval import amp_opts, eval_case, format_eval_rows
from openseed.benchmarks.inputs import benchmark_vocabulary, synthetic_training_sample
from openseed.benchmarks.peak import format_peak_rows, peak_case
from openseed.benchmarks.text import format_text_rows, text_case
from openseed.benchmarks.train import checkpoint_opts, format_train_rows, resolve_datasets, train_case
from openseed.config import setup_cfg
from openseed.utils.amp import autocast_dtype
from tests.tool_loader import load_script, load_tool

TINY = "configs/tiny/tiny_decoupled.yaml"
EVAL_STAGES = ("text", "backbone", "pixel decoder", "decoder", "post-processing", "other")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_stage_timer_times_are_exclusive_across_nesting(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(benchmark_common.time, "perf_counter", clock)
    monkeypatch.setattr(benchmark_common.time, "process_time", clock)
    timer = StageTimer()
    with timer.stage("outer"):
        clock.now += 1.0
        with timer.stage("inner"):
            clock.now += 2.0
        clock.now += 4.0
    with timer.stage("inner"):
        clock.now += 8.0
    assert dict(timer.totals) == dict(timer.cpu_totals) == {"outer": 5.0, "inner": 10.0}


def test_stage_timer_hooks_modules_and_attributes_and_removes_them(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(benchmark_common.time, "perf_counter", clock)
    monkeypatch.setattr(benchmark_common.time, "process_time", clock)

    class Slow(nn.Module):
        def forward(self, x):
            clock.now += 3.0
            return x

    class Owner:
        @staticmethod
        def work(x):
            clock.now += 5.0
            return x + 1

    module, owner, timer = Slow(), Owner(), StageTimer()
    with timer.instrument({"module": module}, {"function": (owner, "work")}):
        assert owner.work(module(torch.ones(1))).item() == 2.0
    assert dict(timer.totals) == {"module": 3.0, "function": 5.0}
    module(torch.ones(1))
    owner.work(0)
    assert dict(timer.totals) == {"module": 3.0, "function": 5.0}  # hooks and patch removed
    assert not module._forward_hooks and not module._forward_pre_hooks


def test_timed_runs_reports_one_value_per_run_and_the_rest_as_other(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(benchmark_common.time, "perf_counter", clock)
    monkeypatch.setattr(benchmark_common.time, "process_time", clock)
    timer, calls = StageTimer(), []

    def step():
        calls.append(1)
        with timer.stage("work"):
            clock.now += 2.0
        clock.now += 0.5

    result = timed_runs(step, timer, runs=3, warmup=2)
    assert len(calls) == 5
    assert result["wall_s"] == result["cpu_s"] == [2.5, 2.5, 2.5]
    assert result["stages"] == result["stage_cpu"] == {"work": [2.0, 2.0, 2.0], "other": [0.5, 0.5, 0.5]}


def allocate(megabytes: int) -> dict:
    before = benchmark_common.peak_rss_mb()
    block = torch.ones(megabytes * 1024 * 1024 // 4)
    return {"sum": float(block.sum()), "peak_before_mb": before}


def malloc_environment() -> dict:
    tiny = torch.full((1024,), 1e-39)  # a denormal float32, in a tensor large enough for the worker threads
    return {"OPENSEED_MALLOC": os.environ.get("OPENSEED_MALLOC"), "denormal_kept": bool((tiny * 1.0).ne(0).all())}


def die() -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def fail() -> dict:
    raise ValueError("broken benchmark case")


@pytest.mark.slow  # four fresh processes, each importing openseed
def test_run_isolated_measures_the_child_peak_rss_and_reports_deaths():
    result = run_isolated(allocate, {"megabytes": 300}, threads=1)
    assert result["threads"] == 1 and result["sum"] == 300 * 1024 * 1024 // 4
    assert 300 <= result["peak_rss_mb"] - result["peak_before_mb"] < 400
    assert run_isolated(die, {}, threads=1) == {"error": f"killed by signal {int(signal.SIGKILL)}", "malloc": "tuned"}
    tuned = run_isolated(malloc_environment, {}, threads=1, malloc="tuned")
    assert tuned["OPENSEED_MALLOC"] == "tuned" and tuned["malloc_tuned"] == (platform.libc_ver()[0] == "glibc")
    assert tuned["denormal_kept"] is not tuned["denormals_flushed"]  # the child flushes denormals where it can
    default = run_isolated(malloc_environment, {}, threads=1, malloc="glibc")
    assert default["OPENSEED_MALLOC"] == "glibc" and default["malloc_tuned"] is False
    assert os.environ.get("OPENSEED_MALLOC") is None  # parent left unchanged
    with pytest.raises(RuntimeError, match="broken benchmark case"):
        run_isolated(fail, {}, threads=1)


def test_vocabularies_and_synthetic_samples():
    assert [len(benchmark_vocabulary(s)) for s in ("coco143", "coco", "coco80", "o365", "lvis", "7")] == [
        143, 133, 80, 365, 1203, 7]
    assert sum(benchmark_vocabulary("coco143").is_thing) == 88
    with pytest.raises(ValueError, match="vocabulary 'nope'"):
        benchmark_vocabulary("nope")
    seg = synthetic_training_sample(64, 5, "seg", 3, seed=4)
    assert seg["image"].shape == (3, 64, 64) and seg["image"].dtype == torch.uint8
    masks, boxes = seg["instances"].gt_masks.tensor, seg["instances"].gt_boxes.tensor
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist()):
        assert mask.sum() == (x1 - x0) * (y1 - y0) > 0 and mask[y0:y1, x0:x1].all()
    assert not synthetic_training_sample(64, 5, "det", 3).get("instances").has("gt_masks")
    assert torch.equal(synthetic_training_sample(64, 5, "seg", 3, seed=4)["image"], seg["image"])


def allocate_free_and_reset_peak() -> dict:
    block = torch.ones(300 * 2**20 // 4)  # 300 MiB, touched
    peak_with_block = benchmark_common.peak_rss_mb()
    del block
    return {"reset": benchmark_common.reset_peak_rss(), "peak_with_block": peak_with_block,
            "peak_after_reset": benchmark_common.peak_rss_mb()}


@pytest.mark.skipif(not os.path.exists(benchmark_common.PROC_CLEAR_REFS), reason="needs Linux /proc/self/clear_refs")
def test_reset_peak_rss_forgets_a_freed_allocation():
    # a fresh process with glibc's default malloc, which unmaps the freed block (the test process may be tuned)
    result = run_isolated(allocate_free_and_reset_peak, {}, threads=1, malloc="glibc")
    assert result["reset"] and result["peak_after_reset"] < result["peak_with_block"] - 200


def test_eval_case_on_the_tiny_model_fills_every_table_field():
    row = eval_case(config_file=TINY, opts=[], weights="", seed=0, size=(96, 128), vocab="coco143",
                    tasks=("panoptic", "instance", "semantic"), runs=2, warmup=0, text_cache="")
    row.update(peak_rss_mb=1024.0, threads=2, malloc="glibc")
    assert len(row["wall_s"]) == 2 and row["num_classes"] == 143 and row["size"] == [96, 128]
    assert set(row["stages"]) == set(EVAL_STAGES)
    for run_index, wall in enumerate(row["wall_s"]):
        assert sum(times[run_index] for times in row["stages"].values()) == pytest.approx(wall)
    assert all(min(row["stages"][s]) > 0 for s in ("backbone", "pixel decoder", "decoder", "post-processing"))
    assert row["counts"]["instances"] > 0
    table = format_eval_rows([row, {"vocab": "lvis", "error": "killed by signal 9", "malloc": "glibc"}])
    assert "peak RSS GB" in table and "coco143 (143)" in table and "96×128" in table
    assert row["text_setup_s"] > 0 and row["text_setup_peak_rss_mb"] > 0 and "text setup s / GB" in table
    assert all(stage in table for stage in EVAL_STAGES) and "killed by signal 9" in table


def test_train_case_loss_does_not_depend_on_checkpointing_and_table_fields():
    rows = []
    for parts in ((), ("pixel_decoder", "text")):
        row = train_case(config_file=TINY, opts=[], weights="", seed=0, size=96, datasets=(), images=1,
                         instances=3, checkpoint=parts, runs=1, warmup=0)
        rows.append(dict(row, peak_rss_mb=900.0, threads=2, malloc="tuned"))
    assert rows[0]["datasets"] == ["synthetic_panoptic_train", "synthetic_boxes_train"]
    assert rows[0]["first_loss"] > 0 and rows[0]["losses"][0] == rows[0]["first_loss"]
    assert rows[1]["first_loss"] == pytest.approx(rows[0]["first_loss"], rel=1e-6)
    assert {"text", "backbone", "pixel decoder", "decoder", "losses", "backward", "optimizer"} <= set(rows[0]["stages"])
    table = format_train_rows(rows)
    assert "pixel_decoder+text" in table and "off" in table and f"{rows[0]['first_loss']:.6f}" in table
    assert "2 / tuned" in table
    assert checkpoint_opts(("text",)) == ["MODEL.SWIN.USE_CHECKPOINT", "False",
                                          "MODEL.ENCODER.ACTIVATION_CHECKPOINT", "False",
                                          "MODEL.TEXT.ACTIVATION_CHECKPOINT", "True"]
    with pytest.raises(ValueError, match="decoder"):
        checkpoint_opts(("decoder",))


def test_float16_train_case_times_steps_the_gradient_scaler_accepted(monkeypatch):
    """The scaler starts at 2^16, so the first float16 steps overflow and skip the optimizer; the timed steps come after
    it accepted one. CPU has no float16 autocast in the config (it falls back to float32), so the test forces it."""
    monkeypatch.setattr(benchmark_train, "autocast_dtype", lambda cfg, section: torch.float16)
    row = train_case(config_file=TINY, opts=[], weights="", seed=0, size=96, datasets=(), images=1, instances=3,
                     checkpoint=(), runs=2, warmup=0)
    assert row["precision"] == "float16"
    assert 1 < row["scaler_settle_steps"] <= benchmark_train.MAX_SCALER_SETTLE_STEPS
    assert row["skipped_steps"] == 0
    assert row["optimizer_state_mb"] > 0  # AdamW moments exist only once a step was taken
    assert len(row["losses"]) == row["scaler_settle_steps"] + 2
    cell = benchmark_train.precision_cell(dict(row, wall_s=[1.0, 1.0]))
    assert cell == f"float16 (settled in {row['scaler_settle_steps']}, 0/2 skipped)"


def test_text_case_trimmed_ensemble_equals_full_context():
    opts = ["MODEL.TEXT.EVAL_PROMPT_ENSEMBLE", "True", "MODEL.TEXT.CONTEXT_LENGTH", "77"]
    row = text_case(config_file=TINY, opts=opts, weights="", seed=0, vocab="12", mode="eval", verify_names=12,
                    runs=1, warmup=0)
    assert row["templates"] == 81 and row["num_classes"] == 12 and row["context_length"] == 77
    assert row["verify"]["names"] == 12 and row["verify"]["max_abs_diff"] < 1e-5
    train_row = text_case(config_file=TINY, opts=[], weights="", seed=0, vocab="coco", mode="train",
                          verify_names=0, runs=1, warmup=0)
    assert train_row["templates"] == 1 and set(train_row["stages"]) == {"forward", "backward", "other"}
    extra = dict(peak_rss_mb=800.0, threads=2, malloc="glibc")
    table = format_text_rows([dict(row, **extra), dict(train_row, **extra)])
    assert "12 names: max |Δ|" in table and "not run" in table and "forward / backward s" in table


@pytest.mark.slow
def test_command_line_prints_tables_for_eval_train_and_text(capsys):
    tool = load_tool("benchmark")
    common = ["--config-file", TINY, "--runs", "1", "--warmup", "0", "--threads", "1", "--malloc", "tuned"]
    tool.main(["eval", *common, "--size", "64", "96", "--output-size", "50", "70", "--vocab", "coco80",
               "--text-cache", "", "--tasks", "instance"])
    tool.main(["train", *common, "--size", "64", "--instances", "2", "--checkpoint", "text"])
    tool.main(["text", *common, "--vocab", "5"])
    out = capsys.readouterr().out
    for header in ("median s", "peak RSS GB", "threads / malloc", "load 1m"):
        assert len(re.findall(rf"\| {header} +\|", out)) == 3, header
    assert "coco80 (80)" in out and "64×96 → 50×70" in out and "post-processing" in out and out.count("1 / tuned") == 3
    assert "backward" in out and "optimizer" in out and "5 (5)" in out


def test_eval_case_through_the_predictor_for_a_photo_size():
    row = eval_case(config_file=TINY, opts=[], weights="", seed=0, size=(0, 0), vocab="4", tasks=("panoptic",),
                    runs=1, warmup=0, text_cache="", image_size=(300, 1000), postprocess_resolution="network")
    row.update(peak_rss_mb=1024.0, threads=1, malloc="glibc")
    assert row["output_size"] == [300, 1000] and row["size"] == [64, 213]  # tiny config: long side ≤ 213
    assert row["postprocess_resolution"] == "network" and row["num_classes"] == 4
    assert "photo 300×1000 (network 64×213, post-processing at network)" in format_eval_rows([row])

def test_amp_opts_switch_autocast_for_eval_and_training():
    cfg = setup_cfg(TINY, amp_opts("bfloat16"))
    assert autocast_dtype(cfg, "TEST") is torch.bfloat16 and autocast_dtype(cfg, "SOLVER") is torch.bfloat16
    cfg = setup_cfg(TINY, amp_opts("float32"))
    assert autocast_dtype(cfg, "TEST") is None and autocast_dtype(cfg, "SOLVER") is None
    with pytest.raises(ValueError, match="float8"):
        amp_opts("float8")


def test_eval_case_under_bfloat16_with_network_flops():
    rows = [eval_case(config_file=TINY, opts=amp_opts("bfloat16"), weights="", seed=0, size=size, vocab="coco80",
                      tasks=("semantic",), runs=1, warmup=0, text_cache="", count_flops=True)
            for size in ((64, 96), (128, 192))]
    assert [r["precision"] for r in rows] == ["bfloat16", "bfloat16"]
    small, large = (r["network_gflop"] for r in rows)
    assert 0 < small < large < 4.5 * small  # 4× the pixels: convolutions and GEMMs grow, the decoder does not
    table = format_eval_rows([dict(r, peak_rss_mb=1.0, threads=1, malloc="tuned") for r in rows])
    assert "bfloat16" in table


def test_train_datasets_by_official_short_names():
    cfg = setup_cfg("configs/openseed/swint_decoupled_coco_o365.yaml", [])
    assert resolve_datasets(cfg, ["coco"]) == ("coco_2017_train_panoptic",)
    assert resolve_datasets(cfg, ["o365", "coco"]) == ("objects365_v2_train", "coco_2017_train_panoptic")
    assert resolve_datasets(cfg, []) == tuple(cfg.DATASETS.TRAIN)
    with pytest.raises(ValueError, match="coco"):
        resolve_datasets(setup_cfg(TINY, []), ["coco"])


def test_peak_case_counts_two_n_cubed_flops_per_product(monkeypatch):
    clock = FakeClock()

    def mm(a, b, out):
        clock.now += 0.5  # every product "takes" half a second
        return torch.matmul(a, b, out=out)

    monkeypatch.setattr("openseed.benchmarks.peak.time.perf_counter", clock)
    monkeypatch.setattr("openseed.benchmarks.peak.torch.mm", mm)
    row = peak_case(size=64, dtype="bfloat16", runs=3, warmup=1)
    assert row["gflops"] == pytest.approx([2 * 64**3 / 0.5 / 1e9] * 3)
    assert "bfloat16" in format_peak_rows([dict(row, threads=2)])


def test_side_by_side_report_ratios_and_floor(tmp_path, capsys):
    def write(name, data):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))

    write("peak", {"rows": [{"dtype": "float32", "gflops": [50.0]}, {"dtype": "bfloat16", "gflops": [200.0]}]})
    write("official_eval", {"wall_s": [10.0, 12.0, 11.0], "peak_rss_mib": 8192.0})
    stages = {"backbone": [1.0], "pixel decoder": [2.0], "decoder": [1.0], "post-processing": [1.0]}
    write("eval_float32_warm", {"rows": [{"wall_s": [5.5], "peak_rss_mb": 2048.0, "stages": stages,
                                          "network_gflop": 100.0, "size": [800, 1216]}]})
    write("eval_bfloat16", {"rows": [{"wall_s": [2.2], "peak_rss_mb": 1024.0, "stages": {"backbone": [1.0]}}]})
    write("train_float32", {"rows": [{"error": "killed by signal 9"}]})
    report = load_script("scripts/side_by_side_report.py")
    report.main(tmp_path)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in capsys.readouterr().out.splitlines()}
    # official 11 s / 8 GB; float32: network 4 s, floor 100 GFLOP / 50 GFLOP/s = 2 s
    assert lines["float32, warm text cache"] == "| float32, warm text cache | 11.00 / 8.00 | 5.50 / 2.00 | 2.00× | 0.25× " \
        "| 4.00 | 2.00 | 50% |"
    assert "| 5.00× | 0.12× | 1.00 | 0.50 | 50% |" in lines["bfloat16 autocast (CPU bfloat16 parts)"]
    assert "missing or failed" in lines["bfloat16 autocast, reference float32 parts"]
    assert "missing or failed" in lines["train step, float32"]
