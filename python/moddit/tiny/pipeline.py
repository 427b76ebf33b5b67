"""TinyPipeline: prompt id -> video with moddit-tiny, the way WanPipeline does it.

    pipe = load_tiny("models/moddit-tiny", device="cuda", dtype=torch.bfloat16)
    out = pipe([0, 3], seeds=[0, 1])                 # 50 steps, CFG 5, 16 x 192 x 256
    out.frames                                       # [2, 16, 192, 256, 3] in [0, 1]

The denoising loop is WanPipeline's: the scheduler's timesteps (set through
`self.scheduler.set_timesteps`), two transformer calls per step with CFG (the
prompt, then the null prompt), the loop inside `self.progress_bar`; so
moddit.diffusers.enable / record work on it as on Wan. The initial noise of a
video comes from its seed alone (a CPU generator), whatever the device, batch or
attention policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils import BaseOutput

from . import latent
from .families import family_index, prompt_table
from .model import FULL, SHIFT, load_model, save_model


def make_scheduler(kind: str = "unipc", shift: float = SHIFT):
    """Wan's scheduler (UniPC, flow prediction, flow_shift) or flow-match Euler."""
    if kind == "unipc":
        return UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                       use_flow_sigmas=True, flow_shift=shift, solver_order=2,
                                       final_sigmas_type="zero")
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    raise ValueError(f"moddit.tiny: scheduler must be 'unipc' or 'euler', got {kind!r}")


@dataclass
class TinyPipelineOutput(BaseOutput):
    """frames: [B, F, H, W, 3] in [0, 1] (torch for "pt", NumPy for "np"; the
    latents for "latent"); latents: [B, 16, F, h, w] float32, always."""
    frames: Any
    latents: torch.Tensor


class TinyPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "transformer"

    def __init__(self, transformer, scheduler, prompt_embeds: Optional[torch.Tensor] = None):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler)
        if prompt_embeds is None:
            prompt_embeds = prompt_table(int(transformer.config.text_dim))
        self.prompt_embeds = prompt_embeds.float().cpu()

    @classmethod
    def from_pretrained(cls, path: str, torch_dtype: Optional[torch.dtype] = None,
                        device: Any = "cpu", scheduler: str = "unipc", **kwargs):
        """A moddit-tiny model folder (model.save_model's layout) as a pipeline."""
        if kwargs:
            raise TypeError(f"TinyPipeline.from_pretrained: unexpected arguments {sorted(kwargs)}")
        return load_tiny(path, device=device, dtype=torch_dtype, scheduler=scheduler)

    def save_pretrained(self, path: str, card: str = "", **kwargs) -> None:
        save_model(self.transformer, path, self.prompt_embeds, card)

    def noise(self, seeds: Sequence[int], frames: int, height: int, width: int) -> torch.Tensor:
        """[B, 16, F, h, w] float32 on the CPU: the initial noise of each seed."""
        out = []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            out.append(torch.randn(latent.CHANNELS, frames, height, width, generator=g))
        return torch.stack(out)

    @torch.no_grad()
    def __call__(self, prompt_ids: Sequence, seeds: Sequence[int],
                 num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 frames: int = FULL[0], height: int = FULL[1], width: int = FULL[2],
                 output_type: str = "pt", latents: Optional[torch.Tensor] = None,
                 callback_on_step_end: Optional[Callable[..., Dict[str, Any]]] = None,
                 return_dict: bool = True):
        """prompt_ids: family indices (or names), one video each; seeds: one per
        video. height, width: the latent size (pixels are 4x). latents: start
        from these instead of the seeds' noise. Returns TinyPipelineOutput."""
        ids = [family_index(p) for p in prompt_ids]
        if len(seeds) != len(ids):
            raise ValueError(f"TinyPipeline: {len(ids)} prompts but {len(seeds)} seeds")
        if not ids:
            raise ValueError("TinyPipeline: no prompts")
        if output_type not in ("pt", "np", "latent"):
            raise ValueError(f"TinyPipeline: output_type must be 'pt', 'np' or 'latent', got "
                             f"{output_type!r}")
        p_t, p_h, p_w = self.transformer.config.patch_size
        if frames < 1 or height % p_h or width % p_w or height < p_h or width < p_w:
            raise ValueError(f"TinyPipeline: latent size {frames}x{height}x{width} must be "
                             f"positive with height and width multiples of {p_h}, {p_w}")
        if num_inference_steps < 1:
            raise ValueError(f"TinyPipeline: num_inference_steps must be >= 1, got "
                             f"{num_inference_steps}")
        device = self._execution_device
        dtype = self.transformer.dtype
        shape = (len(ids), latent.CHANNELS, frames, height, width)
        if latents is None:
            latents = self.noise(seeds, frames, height, width)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"TinyPipeline: latents {tuple(latents.shape)}, expected {shape}")
        latents = latents.to(device=device, dtype=torch.float32)
        prompt_embeds = self.prompt_embeds[ids].to(device=device, dtype=dtype)
        negative_prompt_embeds = torch.zeros_like(prompt_embeds)
        do_cfg = guidance_scale > 1.0

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)

        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                latent_model_input = latents.to(dtype)
                timestep = t.expand(latents.shape[0])
                with self.transformer.cache_context("cond"):
                    noise_pred = self.transformer(
                        hidden_states=latent_model_input, timestep=timestep,
                        encoder_hidden_states=prompt_embeds, return_dict=False)[0]
                if do_cfg:
                    with self.transformer.cache_context("uncond"):
                        noise_uncond = self.transformer(
                            hidden_states=latent_model_input, timestep=timestep,
                            encoder_hidden_states=negative_prompt_embeds, return_dict=False)[0]
                    noise_pred = noise_uncond + guidance_scale * (noise_pred - noise_uncond)
                latents = self.scheduler.step(noise_pred.float(), t, latents,
                                              return_dict=False)[0]
                if callback_on_step_end is not None:
                    outputs = callback_on_step_end(self, i, t, {"latents": latents}) or {}
                    latents = outputs.pop("latents", latents)
                progress_bar.update()

        latents = latents.float()
        if output_type == "latent":
            frames_out: Any = latents
        else:
            frames_out = latent.decode(latents).permute(0, 2, 3, 4, 1)   # B, F, H, W, 3
            if output_type == "np":
                frames_out = frames_out.cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames_out, latents
        return TinyPipelineOutput(frames=frames_out, latents=latents)


def load_tiny(path: str, device: Any = "cpu", dtype: Optional[torch.dtype] = None,
              scheduler: str = "unipc") -> TinyPipeline:
    """The pipeline of a moddit-tiny model folder on `device` (dtype: the
    transformer's; float32 unless given)."""
    model, prompts = load_model(path, device=device, dtype=dtype)
    return TinyPipeline(model, make_scheduler(scheduler), prompts)
