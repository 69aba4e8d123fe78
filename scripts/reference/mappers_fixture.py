"""Mapper-fidelity fixtures: the official COCO-panoptic LSJ and Objects365 training mappers on hand-made samples.

    .venv/bin/python scripts/reference/mappers_fixture.py --seed 0 --size 128 --samples 6 --out tests/fidelity/fixtures

Never imported by the package, never run by CI. It re-executes itself with the interpreter and PYTHONPATH of the
official set-up (`/tmp/ref/env.json`, made by `../shared/reference/setup.sh`; `--ref-env` to point elsewhere) and loads
the two official mapper files by path (`datasets/dataset_mappers/coco_panoptic_new_baseline_dataset_mapper.py`,
`.../o365_instance_new_baseline_dataset_mapper.py`, used by the official `build_train_dataloader` for the mapper
names `coco_panoptic_lsj` and `object365`), built with the official LSJ settings (MIN_SCALE 0.1, MAX_SCALE 2.0,
horizontal flip) and IMAGE_SIZE = `--size`.

Each random draw of the official augmentations is captured where it is drawn (NumPy's `uniform`, with the class of
the augmentation that called it); NumPy's global stream is seeded once with `--seed`. Sample slots ask for cases
(`CASES`): a flip with a crop that cuts objects, no flip with padding, segments/boxes that vanish after the crop, with
and without a flip; draws (and, every 25 tries, the sample) are redrawn until the slot's case holds.

Objects365 samples also hold degenerate boxes (`mappers_samples.DEGENERATE_KINDS`). With the same draws (NumPy's
state restored before each run) the official mapper also runs on the sample without them ("clean") and on the clean
sample plus each degenerate box alone, which records whether the official code kept that box.

Writes `mapper_coco_panoptic_lsj.npz` and `mapper_objects365.npz` into `--out`: `meta` (JSON: settings, the
regeneration command, per sample the dataset dict without paths, the draws `[augmentation, low, high, value]`, the
case, the official output's keys; Objects365: `degenerate`, per degenerate box `{index, kind, official_kept}`, and
`clean_num_instances`), and per sample k: `s{k}_image_png`, `s{k}_pan_png` (panoptic; PNG bytes of the inputs),
`s{k}_out_image_png`, `s{k}_out_classes`, `s{k}_out_boxes`, `s{k}_out_masks` (np.packbits over the flat N×S×S bool
masks), `s{k}_out_padding_mask` (Objects365; packbits of S×S), `s{k}_clean_out_classes`, `s{k}_clean_out_boxes`
(Objects365: the official output on the clean sample).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mappers_samples import objects365_sample, panoptic_sample  # noqa: E402

OFFICIAL_FILES = {
    "coco_panoptic_lsj": ("datasets/dataset_mappers/coco_panoptic_new_baseline_dataset_mapper.py",
                          "COCOPanopticNewBaselineDatasetMapper"),
    "objects365": ("datasets/dataset_mappers/o365_instance_new_baseline_dataset_mapper.py",
                   "O365InstanceNewBaselineDatasetMapper"),
}
CASES = ("flip_crop", "noflip_pad", "vanish", "flip_vanish", "any", "any")
TRIES_PER_SAMPLE, MAX_TRIES = 25, 1000


@contextlib.contextmanager
def recording_draws(log: list):
    """Route `np.random.uniform` through a recorder: (calling augmentation class, low, high, value) per draw."""
    real_uniform = np.random.uniform

    def uniform(low=0.0, high=1.0, size=None):
        value = real_uniform(low, high, size)
        caller = sys._getframe(1).f_locals.get("self")
        log.append([type(caller).__name__, float(low), float(high), float(value)])
        return value

    np.random.uniform = uniform
    try:
        yield
    finally:
        np.random.uniform = real_uniform


def load_official_mapper(code_dir: str, mapper_name: str, size: int):
    path, class_name = OFFICIAL_FILES[mapper_name]
    spec = importlib.util.spec_from_file_location(f"official_{mapper_name}", os.path.join(code_dir, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from detectron2.config import CfgNode

    cfg = CfgNode({"INPUT": official_input(size)})
    return getattr(module, class_name)(cfg, True)


def official_input(size: int) -> dict:
    """INPUT settings of the official config (`configs/openseed/openseed_swint_lang_o365_decouple.yaml`, sections
    COCO and OBJECT365), with IMAGE_SIZE = `size`."""
    return {"IMAGE_SIZE": size, "MIN_SCALE": 0.1, "MAX_SCALE": 2.0, "RANDOM_FLIP": "horizontal", "FORMAT": "RGB"}


def png_bytes(array: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def resized_size(hw: tuple[int, int], scale: float, size: int) -> np.ndarray:
    """Output size of Detectron2 `ResizeScale` (fit inside scale·size, aspect kept)."""
    output_scale = min(size * scale / hw[0], size * scale / hw[1])
    return np.round(np.multiply(hw, output_scale)).astype(int)


def case_holds(case: str, draws: list, hw: tuple[int, int], size: int, vanished: bool) -> bool:
    flipped = draws[0][0] == "RandomFlip" and draws[0][3] < 0.5
    resized = resized_size(hw, next(d[3] for d in draws if d[0] == "ResizeScale"), size)
    return {
        "flip_crop": flipped and (resized > size).any() and not vanished,
        "noflip_pad": not flipped and (resized < size).any(),
        "vanish": vanished,
        "flip_vanish": flipped and vanished,
        "any": True,
    }[case]


def write_sample(work: str, sample: dict, key: str) -> str:
    path = os.path.join(work, f"{key}.png")
    Image.fromarray(sample[key]).save(path)
    return path


def dataset_dict(mapper_name: str, sample: dict, work: str, image_id: int) -> dict:
    h, w = sample["image"].shape[:2]
    record = {"file_name": write_sample(work, sample, "image"), "height": h, "width": w, "image_id": image_id}
    if mapper_name == "coco_panoptic_lsj":
        record.update(pan_seg_file_name=write_sample(work, sample, "pan"), segments_info=sample["segments_info"])
    else:
        record["annotations"] = sample["annotations"]
    return record


def run_mapper(mapper_name: str, mapper, record: dict) -> tuple[dict, list, bool]:
    """(official output, recorded draws, whether an annotated segment/box vanished); `record` is a clean sample."""
    draws: list = []
    with recording_draws(draws):
        out = mapper(json.loads(json.dumps(record)))
    instances = out["instances"]
    if mapper_name == "coco_panoptic_lsj":
        vanished = bool((~instances.gt_masks.flatten(1).any(1)).any()) if len(instances) else False
    else:
        vanished = len(instances) < sum(1 for a in record["annotations"] if not a["iscrowd"])
    return out, draws, vanished


def with_annotations(record: dict, sample: dict, keep_degenerate: set[int]) -> dict:
    """`record` with its degenerate annotations removed except those at indices `keep_degenerate`."""
    degenerate = {index for index, _ in sample.get("degenerate", [])} - keep_degenerate
    if "annotations" not in record:
        return record
    return dict(record, annotations=[a for i, a in enumerate(record["annotations"]) if i not in degenerate])


def replay_with_degenerate(mapper_name: str, mapper, record: dict, sample: dict, state: tuple,
                           clean_draws: list) -> tuple[dict, list]:
    """The official output on the full sample, and per degenerate box whether the official code kept it (the clean
    sample plus that box alone gives one more instance); each run from NumPy state `state`, as the clean run."""
    def replay(keep: set[int]) -> dict:
        np.random.set_state(state)
        out, draws, _ = run_mapper(mapper_name, mapper, with_annotations(record, sample, keep))
        assert draws == clean_draws, "the official draws depend on the annotations"
        return out

    clean_count = len(replay(set())["instances"])
    verdicts = [{"index": index, "kind": kind, "official_kept": len(replay({index})["instances"]) > clean_count}
                for index, kind in sample.get("degenerate", [])]
    return replay({index for index, _ in sample.get("degenerate", [])}), verdicts


def record_outputs(arrays: dict, k: int, out: dict) -> dict:
    instances = out["instances"]
    arrays[f"s{k}_out_image_png"] = png_bytes(out["image"].permute(1, 2, 0).numpy())
    arrays[f"s{k}_out_classes"] = instances.gt_classes.numpy()
    arrays[f"s{k}_out_boxes"] = instances.gt_boxes.tensor.numpy()
    if instances.has("gt_masks"):
        arrays[f"s{k}_out_masks"] = np.packbits(instances.gt_masks.numpy().astype(bool).reshape(-1))
    if "padding_mask" in out:
        arrays[f"s{k}_out_padding_mask"] = np.packbits(out["padding_mask"].numpy().astype(bool).reshape(-1))
    return {
        "keys": sorted(out.keys()),
        "instance_fields": sorted(instances.get_fields().keys()),
        "image_size": list(instances.image_size),
        "masks_dtype": str(instances.gt_masks.dtype) if instances.has("gt_masks") else None,
        "num_instances": len(instances),
    }


def make_fixture(mapper_name: str, args: argparse.Namespace, code_dir: str, commit: str) -> None:
    mapper = load_official_mapper(code_dir, mapper_name, args.size)
    make_sample = panoptic_sample if mapper_name == "coco_panoptic_lsj" else objects365_sample
    arrays, samples = {}, []
    with tempfile.TemporaryDirectory() as work:
        for k in range(args.samples):
            case = CASES[k % len(CASES)]
            for attempt in range(MAX_TRIES):
                if attempt % TRIES_PER_SAMPLE == 0:
                    sample = make_sample(np.random.default_rng([args.seed, k, attempt]), args.size)
                    record = dataset_dict(mapper_name, sample, work, image_id=k)
                state = np.random.get_state()
                clean_out, draws, vanished = run_mapper(mapper_name, mapper, with_annotations(record, sample, set()))
                if case_holds(case, draws, sample["image"].shape[:2], args.size, vanished):
                    break
            else:
                raise SystemExit(f"{mapper_name}: no draw gave case {case!r} for sample {k} in {MAX_TRIES} tries")
            out, verdicts = replay_with_degenerate(mapper_name, mapper, record, sample, state, draws)
            assert (out["image"] == clean_out["image"]).all()
            arrays[f"s{k}_image_png"] = png_bytes(sample["image"])
            if "pan" in sample:
                arrays[f"s{k}_pan_png"] = png_bytes(sample["pan"])
            summary = record_outputs(arrays, k, out)
            inputs = {key: value for key, value in record.items() if not key.endswith("file_name")}
            samples.append({"case": case, "vanished": vanished, "dataset_dict": inputs, "draws": draws,
                            "official_output": summary})
            if "degenerate" in sample:
                arrays[f"s{k}_clean_out_classes"] = clean_out["instances"].gt_classes.numpy()
                arrays[f"s{k}_clean_out_boxes"] = clean_out["instances"].gt_boxes.tensor.numpy()
                samples[-1].update(degenerate=verdicts, clean_num_instances=len(clean_out["instances"]))
    meta = {
        "mapper": mapper_name, "official": "::".join(OFFICIAL_FILES[mapper_name]), "official_commit": commit,
        "seed": args.seed, "size": args.size, "input": official_input(args.size), "samples": samples,
        "command": f"scripts/reference/mappers_fixture.py --seed {args.seed} --size {args.size} "
                   f"--samples {args.samples} --out <dir>",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"mapper_{mapper_name}.npz")
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB): cases "
          f"{[(s['case'], s['official_output']['num_instances']) for s in samples]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="LSJ canvas (INPUT.IMAGE_SIZE); images 0.6–1.6× it")
    parser.add_argument("--samples", type=int, default=6, help="samples per mapper (at least 4)")
    parser.add_argument("--out", default="tests/fidelity/fixtures")
    parser.add_argument("--ref-env", default="/tmp/ref/env.json")
    parser.add_argument("--in-reference-env", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.samples < 4:
        parser.error(f"--samples must be at least 4 (one per case of {CASES[:4]})")
    with open(args.ref_env) as f:
        env_info = json.load(f)
    if not args.in_reference_env:
        env = dict(os.environ, PYTHONPATH=env_info["pythonpath"])
        command = [env_info["python"], os.path.abspath(__file__), *sys.argv[1:], "--in-reference-env"]
        return subprocess.run(command, env=env, check=False).returncode
    np.random.seed(args.seed)
    for mapper_name in OFFICIAL_FILES:
        make_fixture(mapper_name, args, env_info["code"], env_info["commit"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
