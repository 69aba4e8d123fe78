"""The OpenSeeD meta-architecture on the tiny CPU config: inference, validation, bind, joint training."""

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from openseed.config import setup_cfg
from openseed.modeling.meta_arch import BoundOpenSeeD, OpenSeeD
from openseed.vocabulary import Vocabulary

TINY = "configs/tiny/tiny_decoupled.yaml"
VOCAB = Vocabulary.from_names(["cat", "dog", "car"], ["sky", "grass"])
SEG_SET, DET_SET = "c1_test_tiny_seg", "c1_test_tiny_det"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(setup_cfg(TINY)).eval()


def _image(height, width, seed=0):
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_build_from_config(model):
    assert isinstance(model, OpenSeeD)
    assert {"backbone", "sem_seg_head", "criterion"} <= {name for name, _ in model.named_children()}
    assert not any(k.startswith("criterion") or k.startswith("pixel_") for k in model.state_dict())
    assert model.sem_seg_head.predictor.num_queries == 20 and model.sem_seg_head.predictor.num_background_queries == 10


def test_inference_outputs_for_images_of_different_sizes(model):
    inputs = [{"image": _image(128, 128), "height": 200, "width": 180}, {"image": _image(96, 120, seed=1)}]
    with torch.no_grad():
        results = model(inputs, vocabulary=VOCAB)
    assert len(results) == 2
    for result, size in zip(results, [(200, 180), (96, 120)]):
        assert set(result) == {"sem_seg", "panoptic_seg", "instances"}
        assert result["sem_seg"].shape == (len(VOCAB), *size)
        panoptic, segments = result["panoptic_seg"]
        assert panoptic.shape == size and panoptic.dtype == torch.int32 and isinstance(segments, list)
        instances = result["instances"]
        assert instances.image_size == size and instances.pred_masks.shape[1:] == size
        assert instances.pred_masks.dtype == torch.bool and len(instances) > 0
        assert all(VOCAB.is_thing[c] for c in instances.pred_classes.tolist())  # panoptic on: things only


def test_detection_task_skips_mask_computation(model):
    calls = []
    hook = model.sem_seg_head.predictor.mask_embed.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            result = model([{"image": _image(128, 128)}], vocabulary=VOCAB, task="detection")[0]
    finally:
        hook.remove()
    assert calls == []
    assert set(result) == {"instances"} and not result["instances"].has("pred_masks")
    assert len(result["instances"]) == 20  # top-k = DETECTIONS_PER_IMAGE over 20 foreground queries x 5 classes


def test_task_selection_and_bind(model):
    inputs = [{"image": _image(64, 96)}]
    with torch.no_grad():
        semantic = model(inputs, vocabulary=VOCAB, task="semantic")[0]
        bound = model.bind(VOCAB, ("semantic",))
        assert isinstance(bound, BoundOpenSeeD)
        bound_result = bound(inputs)[0]
    assert set(semantic) == {"sem_seg"}
    assert torch.allclose(bound_result["sem_seg"], semantic["sem_seg"], atol=1e-6)


def test_bgr_input_format_flips_channels():
    torch.manual_seed(0)
    rgb_model = build_model(setup_cfg(TINY)).eval()
    bgr_model = build_model(setup_cfg(TINY, ["INPUT.FORMAT", "BGR"])).eval()
    bgr_model.load_state_dict(rgb_model.state_dict())
    image = _image(64, 64)
    with torch.no_grad():
        a = rgb_model([{"image": image}], vocabulary=VOCAB, task="semantic")[0]["sem_seg"]
        b = bgr_model([{"image": image.flip(0)}], vocabulary=VOCAB, task="semantic")[0]["sem_seg"]
    assert torch.allclose(a, b, atol=1e-5)


def test_invalid_inference_inputs(model):
    with pytest.raises(ValueError, match=r"\(1, 32, 32\)"):
        model([{"image": torch.zeros(1, 32, 32, dtype=torch.uint8)}], vocabulary=VOCAB)
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        model([{"image": torch.zeros(32, 32, dtype=torch.uint8)}], vocabulary=VOCAB)
    with pytest.raises(ValueError, match="vocabulary"):
        model([{"image": _image(32, 32)}])
    with pytest.raises(TypeError, match="Vocabulary"):
        model([{"image": _image(32, 32)}], vocabulary=["cat"])
    with pytest.raises(ValueError, match="tasks"):
        model([{"image": _image(32, 32)}], vocabulary=VOCAB, task="captioning")
    with pytest.raises(ValueError, match="empty batch"):
        model([], vocabulary=VOCAB)


# --------------------------------------------------------------------------------------------------- training
def _register_metadata():
    if SEG_SET not in MetadataCatalog.list():
        MetadataCatalog.get(SEG_SET).set(
            thing_classes=["cat", "dog"], stuff_classes=["cat", "dog", "sky"],
            thing_dataset_id_to_contiguous_id={1: 0, 2: 1}, stuff_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2})
    if DET_SET not in MetadataCatalog.list():
        MetadataCatalog.get(DET_SET).set(thing_classes=["car", "Moniter/TV", "person"])


def _instances(classes, boxes, with_masks, size=128):
    inst = Instances((size, size))
    inst.gt_classes = torch.tensor(classes)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    if with_masks:
        masks = torch.zeros(len(classes), size, size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            masks[k, int(y0):int(y1), int(x0):int(x1)] = True
        inst.gt_masks = BitMasks(masks)
    return inst


def _joint_batch():
    seg = [{"image": _image(128, 128, seed=i), "instances": _instances([0, 1, 2], [[10, 10, 50, 60], [70, 20, 120, 90],
                                                                                   [0, 100, 128, 128]], True)}
           for i in range(2)]
    det = [{"image": _image(128, 96, seed=5), "instances": _instances([2, 0], [[5, 5, 40, 40], [50, 60, 90, 120]],
                                                                      False, size=128)}]
    return {SEG_SET: seg, DET_SET: det}


def _training_model(weights=(1.0, 1.0)):
    _register_metadata()
    cfg = setup_cfg(TINY, ["DATASETS.TRAIN", (SEG_SET, DET_SET), "DATASETS.TRAIN_LOSS_WEIGHTS", weights])
    torch.manual_seed(0)
    return build_model(cfg).train()


def test_joint_training_losses_are_prefixed_and_weighted():
    model = _training_model()
    torch.manual_seed(1)
    losses = model(_joint_batch())
    seg_keys = [k for k in losses if k.startswith(SEG_SET + ".")]
    det_keys = [k for k in losses if k.startswith(DET_SET + ".")]
    # 2 decoder layers -> 3 prediction sets: seg 5x3 + 5 + 5x3 = 35, det 3x3 + 3 + 3x3 = 21
    assert len(seg_keys) == 35 and len(det_keys) == 21 and len(losses) == 56
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())

    heavy = _training_model(weights=(2.0, 0.5))
    heavy.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    weighted = heavy(_joint_batch())
    for key in seg_keys:
        assert torch.allclose(weighted[key], 2.0 * losses[key], rtol=1e-4, atol=1e-6), key
    for key in det_keys:
        assert torch.allclose(weighted[key], 0.5 * losses[key], rtol=1e-4, atol=1e-6), key


def test_plain_list_is_the_first_dataset_and_unknown_names_fail():
    model = _training_model()
    losses = model(_joint_batch()[SEG_SET])
    assert all(k.startswith(SEG_SET + ".") for k in losses) and len(losses) == 35
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        model({"not_a_training_set": _joint_batch()[SEG_SET]})
    with pytest.raises(ValueError, match="instances"):
        model({SEG_SET: [{"image": _image(64, 64)}]})


@pytest.mark.slow
def test_training_reduces_the_loss_on_a_fixed_batch():
    model = _training_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    joint = _joint_batch()
    batch = {SEG_SET: joint[SEG_SET][:1], DET_SET: joint[DET_SET]}
    totals = []
    for step in range(5):
        torch.manual_seed(step)
        total = sum(model(batch).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert min(totals[-2:]) < 0.8 * totals[0], totals
