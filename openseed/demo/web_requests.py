"""One request of the web demo (tools/web_demo.py): checked inputs -> prediction -> picture, segments, COCO JSON.

    service = WebDemoService(Predictor("configs/demo/openseed_demo.yaml", "output/demo/model_final.pth"))
    result = service.run(WebRequest("/tmp/upload.jpg", "street.jpg", names="car, person, road", stuff="road"))
    result.picture, result.segments, result.coco      # H×W×3 uint8 RGB; rows of the table; COCO-format dict

No web framework here: the page (openseed/demo/web_app.py) turns its fields into a `WebRequest` and shows a
`RequestError`'s message. Every problem of the input (unreadable or huge image, no class names, malformed boxes, a
threshold outside [0, 1]) is a `RequestError` whose message says what to change.

Box prompts: `boxes` is "x0,y0,x1,y1; x0,y0,x1,y1 name; ..." in pixels of the uploaded image. Each box gets one mask
(`Predictor.segment_boxes`), labelled with the vocabulary; a name after a box conditions that prompt on the name's
text (then every box needs one). With boxes the result is instance masks, whatever the task.

Instances scoring below the threshold are left out of the picture, the table and the JSON alike (box prompts keep
every box's mask); the JSON has the format of tools/demo.py (`openseed.demo.coco_export`). Text embeddings of a vocabulary are computed once and cached
by the model's text encoder, so a repeated vocabulary costs only the image.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from openseed.data.mappers.robust import BadSampleError
from openseed.predictor import Predictor, load_rgb_image
from openseed.structures import OUTPUT_TASKS as TASKS
from openseed.visualization import draw_prediction
from openseed.vocabulary import Vocabulary

from .coco_export import CocoPredictionWriter
from .names import vocabulary_from_text

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
MAX_NAMES = 200
MAX_NAME_LENGTH = 100
MAX_BOXES = 100


class RequestError(ValueError):
    """A request the demo cannot serve; the message is shown in the page as is."""


@dataclass(frozen=True)
class WebRequest:
    """The fields of the page. `image_path` is the uploaded file (None: nothing uploaded), `image_name` its name."""

    image_path: str | None
    image_name: str = "image"
    names: str = ""
    stuff: str = ""
    task: str = "panoptic"
    boxes: str = ""
    score_threshold: float = 0.3


@dataclass
class Segment:
    """A row of the segments table: class name, score (None for panoptic and semantic regions), area in pixels."""

    name: str
    score: float | None
    area: float


@dataclass
class WebResult:
    """The picture (prediction over the image, H×W×3 uint8 RGB), the table rows, the COCO dict and a summary line."""

    picture: np.ndarray
    segments: list[Segment]
    coco: dict
    summary: str
    seconds: dict[str, float] = field(default_factory=dict)


def read_upload(path: str | None, name: str, max_pixels: int) -> np.ndarray:
    """The uploaded image as uint8 H×W×3 RGB; a missing, unreadable or too large image raises `RequestError`."""
    if not path:
        raise RequestError("no image: upload a picture first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise RequestError(f"{name} is far too large to open safely; this demo accepts images up to "
                           f"{max_pixels / 1e6:.1f} megapixels: downscale it first") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error).replace(str(path), name)  # the server's copy of the upload means nothing to the user
        raise RequestError(f"{name} could not be read as an image ({type(error).__name__}: {reason}); "
                           "upload a JPEG, PNG, BMP, GIF or WebP picture") from None
    if width * height > max_pixels:
        raise RequestError(f"{name} is {width}×{height} pixels ({width * height / 1e6:.1f} megapixels); this demo "
                           f"accepts at most {max_pixels / 1e6:.1f} megapixels: downscale it first")
    try:
        return load_rgb_image(path)
    except BadSampleError as error:
        reason = str(error).replace(str(path), name)
        raise RequestError(f"{reason}; upload another picture") from None


def request_vocabulary(names: str, stuff: str) -> Vocabulary:
    """The vocabulary of the two name fields, within `MAX_NAMES` names of at most `MAX_NAME_LENGTH` characters."""
    try:
        vocabulary = vocabulary_from_text(names or "", stuff or "", field="the list of class names")
    except ValueError as error:
        raise RequestError(str(error)) from None
    if len(vocabulary) > MAX_NAMES:
        raise RequestError(f"{len(vocabulary)} class names given; this demo accepts at most {MAX_NAMES}")
    long_names = [name for name in vocabulary.names if len(name) > MAX_NAME_LENGTH]
    if long_names:
        raise RequestError(f"class name {long_names[0][:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    return vocabulary


def parse_boxes(text: str, width: int, height: int) -> tuple[np.ndarray, list[str] | None]:
    """Boxes N×4 (float32 xyxy pixels) and their names (None when no box has one) of "x0,y0,x1,y1 [name]; ..."."""
    boxes, names = [], []
    for number, item in enumerate((part.strip() for part in (text or "").split(";")), start=1):
        if not item:
            continue
        parts = item.split(",", 3)
        last, _, name = parts[-1].strip().partition(" ")
        try:
            box = [float(value) for value in [*parts[:-1], last]]
        except ValueError:
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise RequestError(f"box {number} ({item!r}) is not four numbers x0,y0,x1,y1 (optionally then a name)")
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise RequestError(f"box {number} ({item!r}) needs x0 < x1 and y0 < y1")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise RequestError(f"box {number} ({item!r}) lies outside the {width}×{height} image")
        boxes.append(box)
        names.append(name.strip())
    if len(boxes) > MAX_BOXES:
        raise RequestError(f"{len(boxes)} boxes given; this demo accepts at most {MAX_BOXES}")
    named = [bool(name) for name in names]
    if any(named) and not all(named):
        raise RequestError("name every box or none: box "
                           f"{named.index(False) + 1} has no name but box {named.index(True) + 1} has one")
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), (names if any(named) else None)


def segment_rows(coco: dict) -> list[Segment]:
    """The table rows of a one-image COCO dict: by score (instances), else by area, largest first."""
    names = {category["id"]: category["name"] for category in coco["categories"]}
    rows = [Segment(names[a["category_id"]], a.get("score"), a["area"]) for a in coco["annotations"]]
    return sorted(rows, key=lambda row: (-(row.score or 0.0), -row.area))


class WebDemoService:
    """Serves requests with one `Predictor` (one at a time: the caller serialises requests).

    Args:
        predictor: the model.
        max_image_pixels: larger uploads are refused with a message (outputs are at the image's size).
    """

    def __init__(self, predictor: Predictor, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.predictor = predictor
        self.max_image_pixels = int(max_image_pixels)

    def run(self, request: WebRequest) -> WebResult:
        """Predict one request; raises `RequestError` for every problem of the input."""
        if request.task not in TASKS:
            raise RequestError(f"unknown task {request.task!r}: choose one of {', '.join(TASKS)}")
        threshold = float(request.score_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise RequestError(f"the score threshold must lie in [0, 1], got {threshold}")
        vocabulary = request_vocabulary(request.names, request.stuff)
        start = time.perf_counter()
        image = read_upload(request.image_path, request.image_name, self.max_image_pixels)
        height, width = image.shape[:2]
        boxes, box_names = parse_boxes(request.boxes, width, height)
        loaded = time.perf_counter()
        if len(boxes):
            task = "instance"
            outputs = {"instances": self.predictor.segment_boxes(image, boxes, concepts=box_names,
                                                                 vocabulary=vocabulary)}
        else:
            task = request.task
            outputs = self.predictor(image, vocabulary, task=task)
            if task in ("instance", "detection"):
                instances = outputs["instances"].to("cpu")
                outputs = {"instances": instances[instances.scores >= threshold]}
        predicted = time.perf_counter()
        picture = draw_prediction(image, outputs, vocabulary, task, score_threshold=0.0, scale=1.0)
        writer = CocoPredictionWriter(vocabulary, task)
        writer.add(request.image_name, height, width, outputs)
        coco = writer.as_dict()
        segments = segment_rows(coco)
        done = time.perf_counter()
        seconds = {"read": loaded - start, "predict": predicted - loaded, "draw_and_export": done - predicted}
        prompt = f"{len(boxes)} box prompt(s), instance masks" if len(boxes) else task
        summary = (f"{len(segments)} segment(s) ({prompt}) on {request.image_name} ({width}×{height}) "
                   f"in {done - start:.2f} s")
        return WebResult(picture, segments, coco, summary, seconds)
