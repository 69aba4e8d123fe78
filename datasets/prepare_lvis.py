"""LVIS v1 minival / val jsons with image file names.

`minival`: the images of `lvis_v1_val.json` that are COCO val2017 images (about 5k, the "minival" of MDETR/GLIP
that excludes every COCO train2017 image), or exactly the images listed in `--image-ids` (one id per line; use it
to reproduce a published minival). Every written image gets `file_name` = `<coco split>/<file>` from its `coco_url`
(and `coco_url` from `file_name` where it is missing), so both Detectron2's LVIS loader and tools that read
`file_name` find the images under `coco/`.

    python datasets/prepare_lvis.py                       # writes lvis/lvis_v1_minival.json
    python datasets/prepare_lvis.py --split val           # rewrites lvis/lvis_v1_val.json with file names
"""

from __future__ import annotations

import argparse
import json
import os

COCO_URL_PREFIX = "http://images.cocodataset.org/"


def with_file_names(images: list[dict]) -> list[dict]:
    """Add `file_name` (`val2017/000000000139.jpg`) from `coco_url`, or `coco_url` from `file_name`."""
    result = []
    for image in images:
        image = dict(image)
        if "coco_url" in image:
            image["file_name"] = "/".join(image["coco_url"].split("/")[-2:])
        elif "file_name" in image:
            image["coco_url"] = COCO_URL_PREFIX + image["file_name"]
        else:
            raise ValueError(f"LVIS image {image.get('id')} has neither coco_url nor file_name")
        result.append(image)
    return result


def select_minival(data: dict, image_ids: set[int] | None = None) -> dict:
    """Keep the COCO val2017 images (or `image_ids`) and their annotations; categories are kept whole."""
    images = with_file_names(data["images"])
    if image_ids is None:
        kept = [image for image in images if image["file_name"].startswith("val2017/")]
    else:
        kept = [image for image in images if image["id"] in image_ids]
        missing = image_ids - {image["id"] for image in kept}
        if missing:
            raise ValueError(f"{len(missing)} requested image ids are not in the LVIS json, e.g. {sorted(missing)[:5]}")
    kept_ids = {image["id"] for image in kept}
    annotations = [a for a in data["annotations"] if a["image_id"] in kept_ids]
    return {**data, "images": kept, "annotations": annotations}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lvis_dir = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "lvis")
    parser.add_argument("--split", choices=("minival", "val"), default="minival")
    parser.add_argument("--val-json", default=os.path.join(lvis_dir, "lvis_v1_val.json"))
    parser.add_argument("--image-ids", help="file with one image id per line (minival only)")
    parser.add_argument("--output", help="default: lvis/lvis_v1_<split>.json")
    args = parser.parse_args(argv)
    with open(args.val_json, encoding="utf-8") as f:
        data = json.load(f)
    if args.split == "minival":
        ids = None
        if args.image_ids:
            with open(args.image_ids, encoding="utf-8") as f:
                ids = {int(line) for line in f if line.strip()}
        data = select_minival(data, ids)
    else:
        data = {**data, "images": with_file_names(data["images"])}
    output = args.output or os.path.join(os.path.dirname(args.val_json), f"lvis_v1_{args.split}.json")
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, output)
    print(f"wrote {output}: {len(data['images'])} images, {len(data['annotations'])} annotations")


if __name__ == "__main__":
    main()
