"""Regenerate the class-name files in `openseed/data/vocab/` that come from other packages.

Sources (read, never executed: Python sources are parsed with `ast` and only literals are taken):
- Detectron2 (installed): the 150 ADE20K names (`ADE20K_SEM_SEG_CATEGORIES`).
- the `mmdet` wheel (Apache-2.0): Objects365 v1 / v2 names, the 100 ADE20K thing classes, and the ODinW-13 / ODinW-35
  sets (class names, annotation file and image folder of each set) from its GLIP evaluation configs.
- the `mmsegmentation` wheel (Apache-2.0): the 59 Pascal Context names.

Usage (the wheels need not be installed):
    pip download --no-deps mmdet==3.3.0 mmsegmentation==1.2.2 -d /tmp/wheels
    python datasets/prepare_vocab.py --mmdet-wheel /tmp/wheels/mmdet-3.3.0-py3-none-any.whl \
        --mmseg-wheel /tmp/wheels/mmsegmentation-1.2.2-py3-none-any.whl --out openseed/data/vocab
Hand-written files in the same folder (BDD, NYU-40/ScanNet/SUN RGB-D, SegInW set names) are not touched.
"""

from __future__ import annotations

import argparse
import ast
import json
import zipfile
from pathlib import Path

MMDET_OBJECTS365 = "mmdet/datasets/objects365.py"
MMDET_ADE20K = "mmdet/datasets/ade20k.py"
MMDET_ODINW = {
    "odinw13": "mmdet/.mim/configs/glip/odinw/glip_atss_swin-t_a_fpn_dyhead_pretrain_odinw13.py",
    "odinw35": "mmdet/.mim/configs/glip/odinw/glip_atss_swin-t_a_fpn_dyhead_pretrain_odinw35.py",
}
MMSEG_PASCAL_CONTEXT = "mmseg/datasets/pascal_context.py"
ADE_NAME_ALIASES = {"airplane": "plane"}  # mmdet spelling -> Detectron2 spelling of the same ADE20K class


def read_source(wheel: Path, member: str) -> ast.Module:
    with zipfile.ZipFile(wheel) as archive:
        return ast.parse(archive.read(member).decode("utf-8"), filename=f"{wheel.name}:{member}")


def class_metainfo(module: ast.Module, class_name: str) -> dict:
    """The literal `METAINFO` dict of a class (values that are not literals, e.g. palettes by name, are skipped)."""
    for node in ast.walk(module):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", "") == "METAINFO":
                    return _literal_items(statement.value)
    raise KeyError(f"class {class_name} with a METAINFO literal not found")


def _literal_items(node: ast.expr) -> dict:
    if isinstance(node, ast.Dict):
        pairs = zip(node.keys, node.values)
    elif isinstance(node, ast.Call):
        pairs = ((ast.Constant(k.arg), k.value) for k in node.keywords)
    else:
        raise TypeError(f"expected a dict literal, got {ast.dump(node)[:80]}")
    items = {}
    for key, value in pairs:
        try:
            items[ast.literal_eval(key)] = ast.literal_eval(value)
        except ValueError:
            continue
    return items


def detectron2_ade20k_names() -> list[str]:
    from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

    return [name.strip() for name in ADE20K_SEM_SEG_CATEGORIES]


def ade20k_150(mmdet_wheel: Path) -> dict:
    names = detectron2_ade20k_names()
    things = {ADE_NAME_ALIASES.get(n, n) for n in class_metainfo(read_source(mmdet_wheel, MMDET_ADE20K),
                                                                  "ADE20KPanopticDataset")["thing_classes"]}
    unknown = things - set(names)
    if unknown or len(things) != 100:
        raise ValueError(f"ADE20K thing classes do not match the 150 names: unknown {sorted(unknown)}, {len(things)}")
    return {
        "source": "names: detectron2 ADE20K_SEM_SEG_CATEGORIES (stripped); thing flags: mmdet ADE20KPanopticDataset",
        "categories": [{"id": i, "name": n, "isthing": n in things} for i, n in enumerate(names)],
    }


def objects365(mmdet_wheel: Path, class_name: str, version: str) -> dict:
    names = class_metainfo(read_source(mmdet_wheel, MMDET_OBJECTS365), class_name)["classes"]
    if len(names) != 365:
        raise ValueError(f"{class_name}: expected 365 names, got {len(names)}")
    return {
        "source": f"mmdet {class_name}.METAINFO (category ids 1..365 in this order; whitespace stripped)",
        "version": version,
        "classes": [n.strip() for n in names],
    }


def odinw_sets(module: ast.Module) -> list[dict]:
    """Walk a GLIP ODinW config: each `dataset_<Set> = dict(...)` takes the preceding `class_name` and `_data_root`."""
    constants: dict[str, object] = {"data_root": ""}
    sets = []
    for statement in module.body:
        if not isinstance(statement, ast.Assign) or not isinstance(statement.targets[0], ast.Name):
            continue
        target = statement.targets[0].id
        if target in ("class_name", "_data_root"):
            constants[target] = _evaluate(statement.value, constants)
        elif target.startswith("dataset_") and isinstance(statement.value, ast.Call):
            fields = {k.arg: k.value for k in statement.value.keywords}
            prefix = _literal_items(fields["data_prefix"])["img"]
            sets.append({
                "name": target[len("dataset_"):],
                "root": constants["_data_root"],
                "ann_file": _evaluate(fields["ann_file"], constants),
                "image_dir": prefix,
                "classes": list(constants["class_name"]),
            })
    return sets


def _evaluate(node: ast.expr, constants: dict) -> object:
    """Literals, names bound earlier in the config, and `+` between them."""
    if isinstance(node, ast.Name):
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _evaluate(node.left, constants) + _evaluate(node.right, constants)
    return ast.literal_eval(node)


def odinw(mmdet_wheel: Path) -> dict:
    """Both suites in full: two ODinW-13 sets (CottontailRabbits, NorthAmericaMushrooms) use other annotation files
    than their ODinW-35 namesakes, so each suite keeps its own entries."""
    keys = ("name", "root", "ann_file", "image_dir", "classes")
    suites = {}
    for suite, member in MMDET_ODINW.items():
        sets = odinw_sets(read_source(mmdet_wheel, member))
        suites[suite] = [{k: s[k] for k in keys} for s in sets]
    return {"source": "mmdet GLIP ODinW configs (" + ", ".join(MMDET_ODINW.values()) + ")", **suites}


def pascal_context_59(mmseg_wheel: Path) -> dict:
    names = class_metainfo(read_source(mmseg_wheel, MMSEG_PASCAL_CONTEXT), "PascalContextDataset59")["classes"]
    if len(names) != 59:
        raise ValueError(f"expected 59 Pascal Context names, got {len(names)}")
    return {"source": "mmsegmentation PascalContextDataset59.METAINFO", "classes": list(names)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmdet-wheel", type=Path, required=True)
    parser.add_argument("--mmseg-wheel", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "openseed/data/vocab")
    args = parser.parse_args(argv)
    outputs = {
        "ade20k_150.json": ade20k_150(args.mmdet_wheel),
        "objects365_v1.json": objects365(args.mmdet_wheel, "Objects365V1Dataset", "v1"),
        "objects365_v2.json": objects365(args.mmdet_wheel, "Objects365V2Dataset", "v2"),
        "odinw.json": odinw(args.mmdet_wheel),
        "pascal_context_59.json": pascal_context_59(args.mmseg_wheel),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for file_name, content in outputs.items():
        (args.out / file_name).write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out / file_name}")


if __name__ == "__main__":
    main()
