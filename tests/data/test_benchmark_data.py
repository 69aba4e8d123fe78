"""`tools/benchmark.py data`: throughput rows for the LSJ mappers, printed as a table."""

from openseed.benchmarks.data import format_rows, mapper_throughput, run_data_benchmark
from tests.tool_loader import load_tool


def test_mapper_throughput_counts_calls():
    calls = []
    rates = mapper_throughput(calls.append, [{"a": 1}, {"a": 2}], images=3, runs=2, warmup=1)
    assert len(calls) == 1 + 3 * 2 and len(rates) == 2 and all(r > 0 for r in rates)


def test_data_benchmark_rows_and_cli(tiny_synthetic, capsys):
    cases = (("coco_panoptic_lsj", "tsyn_panoptic_train"), ("objects365_lsj", "tsyn_boxes_train"))
    rows = run_data_benchmark(image_size=64, images=2, runs=2, warmup=1, cases=cases)
    assert [r["mapper"] for r in rows] == ["coco_panoptic_lsj", "objects365_lsj"]
    assert all(r["min_images_per_s"] <= r["median_images_per_s"] <= r["max_images_per_s"] for r in rows)
    assert rows[0]["instances_per_image"] >= 2  # things + stuff segments
    assert "coco_panoptic_lsj" in format_rows(rows)
    tool = load_tool("benchmark")
    tool.main(["data", "--image-size", "64", "--images", "1", "--runs", "1", "--warmup", "0",
               "--case", "objects365_lsj:tsyn_boxes_train"])
    out = capsys.readouterr().out
    assert "objects365_lsj" in out and "median img/s" in out
