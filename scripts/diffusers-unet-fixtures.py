#!/usr/bin/env python3
"""Reference fixtures for the diffusers UNet2DModel import (Tests/SharedTests/DiffusersTests.swift).

For each small UNet2DModel below (fixed seed): the model directory in diffusers layout
(config.json + diffusion_pytorch_model.safetensors, F32) under
Tests/SharedTests/Fixtures/diffusers-unet/NAME/, and NAME/reference.safetensors holding the
inputs x, t, y (F32 / I64), diffusers' output `sample`, and intermediate activations
(`act.conv_in`, `act.down_blocks.i`, `act.mid_block`, `act.up_blocks.i`, `act.time_embedding`)
for layer-by-layer diagnosis. One pipeline directory (model_index.json, unet/,
scheduler/scheduler_config.json) carries a DDIMScheduler config.

Run:  python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install torch --index-url \
        https://download.pytorch.org/whl/cpu && /tmp/dvenv/bin/pip install diffusers safetensors
      /tmp/dvenv/bin/python scripts/diffusers-unet-fixtures.py
"""
import json
import os
import shutil
import sys

import torch
from diffusers import DDIMScheduler, UNet2DModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "SharedTests", "Fixtures",
                    "diffusers-unet")

CIFAR = dict(down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
             layers_per_block=2, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
             attention_head_dim=None)
BENCH = dict(layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))

FIXTURES = {
    # (a) google/ddpm-cifar10-32's block structure at 1/16 width, 16x16
    "cifar-small": dict(CIFAR, sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 16),
                        norm_num_groups=4),
    # a 256-style network (google/ddpm-*-256: 6 levels, mults 1,1,2,2,4,4, attention at the 5th) at 32x32
    "church-small": dict(CIFAR, sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4, 4, 8, 8, 16, 16),
                         down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4, norm_num_groups=2),
    # (b) the peer's bench-unet-28 at quarter width (diffusers defaults otherwise), 28x28
    "bench-unet-28-quarter": dict(BENCH, sample_size=28, in_channels=1, out_channels=1, block_out_channels=(8, 16, 16),
                                  norm_num_groups=4),
    # (c) class-conditional (nn.Embedding(11, temb))
    "cond": dict(BENCH, sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16, 16),
                 norm_num_groups=4, num_class_embeds=11),
    # (d) learned_range: 2x output channels; dropout kept (inactive in eval), centred input
    "learned-range": dict(CIFAR, sample_size=16, in_channels=2, out_channels=4, block_out_channels=(8, 16, 16),
                          down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                          attention_head_dim=4, dropout=0.1, center_input_sample=True),
    # (e) resnet_time_scale_shift scale_shift (the mid attention then has no GroupNorm), mid scale 2**0.5
    "scale-shift": dict(BENCH, sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16, 16),
                        norm_num_groups=4, resnet_time_scale_shift="scale_shift", mid_block_scale_factor=2 ** 0.5,
                        add_attention=True),
}
PIPELINE = "cifar-small"   # also written as a pipeline directory, NAME-pipeline


def perturb(model, g):
    """Norm weights 1 + 0.2 N, biases 0.2 N (diffusers initialises them to 1 and 0, which would
    leave the affine part of every GroupNorm untested); everything else keeps its init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                base = 1.0 if name.endswith(".weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))


def write(name, cfg, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1000)
    model = UNet2DModel(**cfg).eval()
    perturb(model, g)
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    c, s = cfg["in_channels"], cfg["sample_size"]
    x = torch.randn((3, c, s, s), generator=g)
    t = torch.tensor([999, 500, 3], dtype=torch.int64)
    acts = {}

    def hook(key):
        def f(_m, _inp, o):
            acts["act." + key] = (o[0] if isinstance(o, tuple) else o).detach().clone()
        return f

    model.conv_in.register_forward_hook(hook("conv_in"))
    model.time_embedding.register_forward_hook(hook("time_embedding"))
    for i, b in enumerate(model.down_blocks):
        b.register_forward_hook(hook(f"down_blocks.{i}"))
    model.mid_block.register_forward_hook(hook("mid_block"))
    for i, b in enumerate(model.up_blocks):
        b.register_forward_hook(hook(f"up_blocks.{i}"))
    ref = {"x": x, "t": t}
    kw = {}
    if cfg.get("num_class_embeds"):
        y = torch.tensor([0, 4, cfg["num_class_embeds"] - 1], dtype=torch.int64)
        ref["y"] = y
        kw["class_labels"] = y
    with torch.no_grad():
        sample = model(x, t, **kw).sample
    ref["sample"] = sample
    ref.update(acts)
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n} parameters, |sample| max {sample.abs().max():.4f}", file=sys.stderr)
    return model


def ddim_loop(model, sched, steps, name, file):
    """`steps` DDIM steps (eta 0) with `sched` from the fixed x_T (seed 50, 4 samples); writes
    NAME/FILE with x_T, the result x_0 and the visited timesteps."""
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(50)
    c, s = model.config.in_channels, model.config.sample_size
    x_T = torch.randn((4, c, s, s), generator=g)
    x = x_T.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            eps = model(x, t).sample
            x = sched.step(eps, t, x, eta=0.0).prev_sample
    save_file({"x_T": x_T, "x_0": x.contiguous(), "timesteps": sched.timesteps.clone()}, os.path.join(ROOT, name, file))
    print(f"{name}: {file}: DDIM-{steps} over t = {sched.timesteps[0]} ... {sched.timesteps[-1]}", file=sys.stderr)


def ddim50(model, name):
    """DDIM, 50 steps, eta 0, from a fixed x_T: DDIMScheduler with leading spacing, steps_offset 0,
    set_alpha_to_one, no clipping (the visited t are 980, 960, ..., 0); NAME/ddim50.safetensors."""
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon")
    ddim_loop(model, sched, 50, name, "ddim50.safetensors")


def ddim5_pipeline(model, name, pipe):
    """DDIM, 5 steps, eta 0, with the pipeline's own DDIMScheduler config (steps_offset 1, so
    t = 801, 601, 401, 201, 1; clip_sample, and step()'s default use_clipped_model_output = False:
    x_0 clipped, the model's eps kept) from the same x_T as ddim50; NAME/ddim5-pipeline.safetensors.
    Only 5 steps: with the random network's eps kept, the chain is chaotic (a relative change of
    1e-6 in x_T changes x_0 by 2e-5 after 5 steps, 1e-3 after 20, 0.1 after 50: float32 against
    float64 in diffusers itself differ by 0.09 at 50)."""
    ddim_loop(model, DDIMScheduler.from_pretrained(os.path.join(pipe, "scheduler")), 5, name, "ddim5-pipeline.safetensors")


def main():
    os.makedirs(ROOT, exist_ok=True)
    for seed, (name, cfg) in enumerate(FIXTURES.items()):
        model = write(name, cfg, seed)
        if name == PIPELINE:
            ddim50(model, name)
            pipe = os.path.join(ROOT, name + "-pipeline")
            shutil.rmtree(pipe, ignore_errors=True)
            model.save_pretrained(os.path.join(pipe, "unet"), safe_serialization=True)
            sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                  clip_sample=True, set_alpha_to_one=True, steps_offset=1,
                                  prediction_type="epsilon")
            sched.save_pretrained(os.path.join(pipe, "scheduler"))
            index = {"_class_name": "DDPMPipeline", "_diffusers_version": __import__("diffusers").__version__,
                     "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
            with open(os.path.join(pipe, "model_index.json"), "w") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            ddim5_pipeline(model, name, pipe)


if __name__ == "__main__":
    main()
