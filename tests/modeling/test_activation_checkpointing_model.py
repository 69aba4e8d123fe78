"""The memory-saving and fast training paths (activation checkpointing of backbone, pixel decoder and text encoder;
the embedding-bag deformable-attention kernel) give the same losses and gradients as the plain reference one, for a
whole joint training step with drop path and conditioned queries."""

import torch
from detectron2.modeling import build_model

from openseed.benchmarks.inputs import synthetic_training_sample
from openseed.benchmarks.train import checkpoint_opts
from openseed.config import setup_cfg
from openseed.vocabulary import Vocabulary

TINY = "configs/tiny/tiny_decoupled.yaml"
NARROW_SWIN = ["MODEL.BACKBONE.NAME", "D2SwinTransformer", "MODEL.SWIN.EMBED_DIM", "16",
               "MODEL.SWIN.NUM_HEADS", "[1, 2, 4, 8]", "MODEL.SWIN.DEPTHS", "[2, 2, 2, 2]",
               "MODEL.SWIN.DROP_PATH_RATE", "0.2"]
VOCAB = Vocabulary.from_names(["cat", "dog", "car", "bus", "cup"], ["sky", "grass"])


def _losses_and_grads(parts, state=None, kernel="pytorch"):
    cfg = setup_cfg(TINY, NARROW_SWIN + checkpoint_opts(parts) + ["MODEL.ENCODER.DEFORM_ATTN_IMPL", kernel])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    if state is not None:
        model.load_state_dict(state)
    seg_set, det_set = cfg.DATASETS.TRAIN
    batch = {seg_set: [synthetic_training_sample(96, len(VOCAB), "seg", 4, seed=1)],
             det_set: [synthetic_training_sample(96, len(VOCAB), "det", 5, seed=2)]}
    torch.manual_seed(1)
    losses = model(batch, vocabulary=VOCAB)
    sum(losses.values()).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return model, {k: v.detach() for k, v in losses.items()}, grads


def test_checkpointed_training_step_equals_plain_step():
    plain, plain_losses, plain_grads = _losses_and_grads(())
    checkpointed, losses, grads = _losses_and_grads(("backbone", "pixel_decoder", "text"), plain.state_dict())
    assert checkpointed.backbone.layers[0].use_checkpoint and not plain.backbone.layers[0].use_checkpoint
    assert checkpointed.lang_encoder.lang_encoder.activation_checkpoint
    assert any(key.endswith("_dn") for key in losses)  # conditioned queries ran
    assert sum(float(v) for v in plain_losses.values()) > 0
    assert losses.keys() == plain_losses.keys()
    for key, value in plain_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-6, atol=1e-6, msg=key)
    assert grads.keys() == plain_grads.keys()
    assert any(name.startswith("backbone.") for name in grads) and any("lang_encoder" in n for n in grads)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_embedding_bag_kernel_training_step_equals_reference_step():
    reference, reference_losses, reference_grads = _losses_and_grads(())
    fast, losses, grads = _losses_and_grads((), reference.state_dict(), kernel="embedding_bag")
    assert fast.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].self_attn.impl == "embedding_bag"
    assert losses.keys() == reference_losses.keys()
    for key, value in reference_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=1e-5, msg=key)
    assert grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():  # summation order differs: compare to the gradient's magnitude
        scale = max(grad.abs().max().item(), 1e-3)
        assert (grads[name] - grad).abs().max().item() <= 1e-5 * scale, name
