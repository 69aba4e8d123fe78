"""Summary table: headline metrics per dataset, the paper's numbers (docs/official_behaviours.md §13) beside ours, suite mean / median."""

from __future__ import annotations

import json

import pytest

from openseed.config import setup_cfg
from openseed.data.registration.seginw import seginw_dataset_names
from openseed.evaluation import markdown_table, paper_model_for, summarize, write_summary
from openseed.evaluation.paper_numbers import DATASET_NUMBERS, SUITE_NUMBERS, paper_number
from tests.evaluation.conftest import TINY_CONFIG

ADE = {"panoptic_seg": {"PQ": 20.5, "SQ": 70.0}, "bbox": {"AP": 16.0}, "segm": {"AP": 13.25},
       "sem_seg": {"mIoU": 22.0, "fwIoU": 40.0}}


def test_dataset_row_takes_headline_metrics_and_paper_numbers():
    summary = summarize({"ade20k_panoptic_val": ADE, "my_custom_val": {"bbox": {"AP": None}}}, paper_model="L")
    ade, custom = summary["rows"]
    assert ade["values"] == {"PQ": 20.5, "mask AP": 13.25, "box AP": 16.0, "mIoU": 22.0}
    assert ade["paper"] == {"PQ": 19.7, "mask AP": 15.0, "box AP": 17.7, "mIoU": 23.4}
    assert custom == {"name": "my_custom_val", "values": {"box AP": None}, "paper": {}, "note": ""}
    table = markdown_table(summary)
    assert "| ade20k_panoptic_val | 20.5 (19.7) | 13.2 (15.0) | 16.0 (17.7) | 22.0 (23.4) |" in table
    assert "| my_custom_val | – | – | – | – |" in table
    assert "OpenSeeD (L)" in table


def test_suite_mean_and_median_rows():
    names = seginw_dataset_names()[:4]
    values = [10.0, 40.0, 20.0, None]
    results = {n: {"segm": {"AP": v}, "bbox": {"AP": 1.0}} for n, v in zip(names, values)}
    rows = {r["name"]: r for r in summarize(results, paper_model="T")["rows"]}
    assert rows["seginw mean"]["values"] == {"mask AP": pytest.approx(70.0 / 3)}
    assert rows["seginw median"]["values"] == {"mask AP": 20.0}
    assert rows["seginw mean"]["paper"] == {"mask AP": 33.9} and rows["seginw median"]["paper"] == {"mask AP": 21.5}
    assert rows["seginw mean"]["note"] == "3 of 25 datasets"
    assert rows[names[0]]["paper"] == {"mask AP": 12.2}  # Airplane-Parts, Table 4 (T)
    assert "odinw35 mean" not in rows


def test_seginw_paper_numbers_match_the_reported_mean_and_median():
    for model, index in (("T", 0), ("L", 1)):
        values = sorted(paper_number(n, "mask AP", model) for n in seginw_dataset_names())
        assert len(values) == 25
        assert round(sum(values) / 25, 1) == SUITE_NUMBERS["seginw"]["mean"][index]
        assert values[12] == SUITE_NUMBERS["seginw"]["median"][index]
    assert all(name in DATASET_NUMBERS for name in seginw_dataset_names())


def test_paper_model_follows_the_backbone():
    assert paper_model_for(setup_cfg(None, [])) == "T"
    assert paper_model_for(setup_cfg(None, ["MODEL.SWIN.EMBED_DIM", "192"])) == "L"
    assert paper_model_for(setup_cfg(TINY_CONFIG)) == "T"


def test_write_summary_files(tmp_path):
    summary = write_summary({"ade20k_panoptic_val": ADE}, str(tmp_path), paper_model=None)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored == summary and stored["rows"][0]["paper"] == {}
    assert (tmp_path / "summary.md").read_text().strip() == summary["markdown"]
    assert "(19.8)" not in summary["markdown"]
