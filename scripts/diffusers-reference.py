#!/usr/bin/env python3
# Reference tensors from diffusers' schedulers for Tests/SharedTests/SolverTests.swift
# (testDiffusersReference*). Writes Tests/SharedTests/Fixtures/diffusers/schedulers.safetensors.
#
#   python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install torch diffusers safetensors numpy
#   /tmp/dvenv/bin/python scripts/diffusers-reference.py
#
# Schedule: linear, T = 1000, beta 1e-4 .. 0.02. diffusers builds alphas_cumprod as a float32
# cumprod (relative error ~1e-6 after 1000 factors); to compare the solvers to ~1e-6 the script
# puts the float64 cumprod into each scheduler before set_timesteps (its sigmas are then the
# float64 values rounded once to float32). The diffusers-native float32 alphas_cumprod is stored
# too ("native_alphas_cumprod").
#
# Per configuration NAME (spacing "trailing", = our trailing; K = 10 steps):
#   NAME.timesteps  int64 [K or 2K-1]   diffusers' timesteps (descending)
#   NAME.sigmas     f32                 diffusers' sigmas
#   NAME.sample     f32 [calls, N, D]   the `sample` passed to each step() call (diffusers' coordinates:
#                                       VP x for DPM-Solver, VE X = x sqrt(1 + sigma^2) for Euler/Heun)
#   NAME.model_output f32 [calls, N, D] the eps given to each call (fixed random numbers)
#   NAME.prev       f32 [calls, N, D]   step()'s prev_sample; for the stochastic ones with noise = 1
#   NAME.prev0      f32 [calls, N, D]   (stochastic ones) the same call with noise = 0
# The chain feeds each call the previous call's prev (noise = 1), so multistep history is diffusers'.
# UniPC: "unipc" (its defaults: order 2, bh2, predict_x0, corrector on every step).
# Karras: dpmpp_karras_K.timesteps / .sigmas for K = 10, 25 (use_karras_sigmas, spacing linspace),
# and the run "dpmpp2m_karras" with custom timesteps = those of K = 10 (sigma of the rounded timestep).
import copy
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from diffusers import (DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_module

T, N, D, K = 1000, 2, 3, 10
base = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
betas64 = np.linspace(1e-4, 0.02, T, dtype=np.float64)
abar64 = np.cumprod(1 - betas64)
out = {}


def inject(s):
    """Replace the float32 cumprod by the float64 one (and what diffusers derives from it)."""
    ac = torch.tensor(abar64, dtype=torch.float64)
    s.alphas_cumprod = ac
    if hasattr(s, "alpha_t"):
        s.alpha_t = torch.sqrt(ac)
        s.sigma_t = torch.sqrt(1 - ac)
        s.lambda_t = torch.log(s.alpha_t) - torch.log(s.sigma_t)
    return s


def run(name, s, calls, stochastic=None):
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    sample = torch.randn(N, D, generator=g, dtype=torch.float32) * float(getattr(s, "init_noise_sigma", 1.0))
    samples, outputs, prevs, prevs0 = [], [], [], []
    for k in range(calls):
        t = s.timesteps[k]
        eps = torch.randn(N, D, generator=g, dtype=torch.float32)
        samples.append(sample.numpy().copy()); outputs.append(eps.numpy().copy())
        if stochastic is not None:
            zero = copy.deepcopy(s)
            prevs0.append(stochastic(zero, eps, t, sample, 0.0).numpy().copy())
            sample = stochastic(s, eps, t, sample, 1.0)
        else:
            sample = s.step(eps, t, sample).prev_sample
        prevs.append(sample.numpy().copy())
    out[name + ".timesteps"] = s.timesteps.numpy().astype(np.int64)
    out[name + ".sigmas"] = s.sigmas.numpy().astype(np.float32)
    out[name + ".sample"] = np.stack(samples)
    out[name + ".model_output"] = np.stack(outputs)
    out[name + ".prev"] = np.stack(prevs)
    if prevs0:
        out[name + ".prev0"] = np.stack(prevs0)


def sde_step(s, eps, t, sample, value):
    return s.step(eps, t, sample, variance_noise=torch.full_like(sample, value)).prev_sample


def ancestral_step(s, eps, t, sample, value):
    saved = ea_module.randn_tensor
    ea_module.randn_tensor = lambda shape, **kw: torch.full(shape, value, dtype=torch.float32)
    try:
        return s.step(eps, t, sample).prev_sample
    finally:
        ea_module.randn_tensor = saved


out["native_alphas_cumprod"] = DPMSolverMultistepScheduler(**base).alphas_cumprod.numpy().astype(np.float32)

dpm = dict(base, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing")
s = inject(DPMSolverMultistepScheduler(**dpm)); s.set_timesteps(K); run("dpmpp2m", s, K)
s = inject(DPMSolverMultistepScheduler(**dict(dpm, algorithm_type="sde-dpmsolver++")))
s.set_timesteps(K); run("dpmpp2m_sde", s, K, stochastic=sde_step)
for k in (10, 25):
    s = inject(DPMSolverMultistepScheduler(**dict(dpm, timestep_spacing="linspace", use_karras_sigmas=True)))
    s.set_timesteps(k)
    out[f"dpmpp_karras_{k}.timesteps"] = s.timesteps.numpy().astype(np.int64)
    out[f"dpmpp_karras_{k}.sigmas"] = s.sigmas.numpy().astype(np.float32)
s = inject(DPMSolverMultistepScheduler(**dpm))
s.set_timesteps(timesteps=out["dpmpp_karras_10.timesteps"].tolist()); run("dpmpp2m_karras", s, len(s.timesteps))

e = dict(base, timestep_spacing="trailing")
s = inject(EulerDiscreteScheduler(**e)); s.set_timesteps(K); run("euler", s, K)
s = inject(HeunDiscreteScheduler(**e)); s.set_timesteps(K); run("heun", s, 2 * K - 1)
s = inject(EulerAncestralDiscreteScheduler(**e)); s.set_timesteps(K); run("euler_ancestral", s, K, stochastic=ancestral_step)
s = inject(UniPCMultistepScheduler(**dict(base, timestep_spacing="trailing"))); s.set_timesteps(K); run("unipc", s, K)

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "SharedTests", "Fixtures", "diffusers", "schedulers.safetensors")
os.makedirs(os.path.dirname(path), exist_ok=True)
save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, path,
          metadata={"kind": "diffusers-reference", "diffusers": __import__("diffusers").__version__, "torch": torch.__version__})
print(path, len(out), "tensors")
