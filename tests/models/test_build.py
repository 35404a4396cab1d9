"""lib/models/build.py: models built from a configuration (memory layout)."""
import torch

from lib import experiments


def test_cnns_are_built_channels_last_and_compute_what_the_contiguous_model_computes():
    """Every CNN (native or custom convolution) trains channels_last; the layout changes no logits or gradients."""
    images = torch.rand(2, 3, 32, 32)
    for name in ("simplenet", "simplenet_custom", "improvednet"):
        cfg = experiments.config(name, "smoke")
        assert cfg["channels_last"]
        torch.manual_seed(0)
        fast = experiments.build_model(cfg)
        torch.manual_seed(0)
        plain = experiments.build_model(dict(cfg, channels_last=False))
        conv = next(m for m in fast.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
        outputs = [model(images) for model in (fast, plain)]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
        grads = [torch.autograd.grad(out.square().sum(), model.fc.weight)[0]
                 for out, model in zip(outputs, (fast, plain))]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)
    assert not experiments.config("vit", "smoke")["channels_last"]
