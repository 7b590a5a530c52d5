"""Writes tests/data/model_sampling/playground.safetensors: Playground v2.5's
sampling run, as upstream diffusers does it, on kiln's tiny random SDXL model
(tests/data/sdxl/tiny_sdxl_diffusers).

Playground v2.5 is an SDXL UNet trained as an EDM model: eps-prediction
preconditioned with sigma_data 0.5, sampled with EDMDPMSolverMultistepScheduler
(karras sigmas from 0.002 to 80, rho 7, DPM-Solver++(2M) midpoint, the last
step first order, down to sigma 0), and a VAE whose latents are normalized per
channel: latents_mean [-1.6574, 1.886, -1.383, 2.5155], latents_std
[8.4927, 5.9022, 6.5498, 5.2299], scaling_factor 0.5. Here the tiny SDXL
folder's VAE is given that latent format (the weights are unchanged) and the
StableDiffusionXLPipeline runs with that scheduler, 4 steps, guidance 5, on
the conditioning and noise of tests/data/sdxl/golden.safetensors's KSampler
run (run.positive, run.negative, run.positive_pooled, run.negative_pooled,
run.noise). height and width are 64, so the time ids are [64, 64, 0, 0, 64,
64] (ComfyUI's: 8 x the 8x8 latent); the noise is passed as the latents, which
the pipeline multiplies by the scheduler's init_noise_sigma. The tiny VAE
upsamples by 2, so the image is 16x16.

Tensors (float32):
  run.noise (1,4,8,8): torch.randn(1, 4, 8, 8, generator=torch.manual_seed(42)),
    the golden's run.noise;
  run.sigmas (5,): scheduler.sigmas after set_timesteps(4), ending with 0;
  run.edm_latent (1,4,8,8): the sampled latent in the model's space (the
    pipeline with output_type="latent");
  run.latent_out (1,4,8,8): run.edm_latent * latents_std / 0.5 + latents_mean
    per channel, the VAE's latent (what ComfyUI's KSampler returns, through the
    latent format's process_out);
  run.image (1,16,16,3) in [0, 1]: the pipeline's output_type="np" image, checked
    to be vae.decode(run.latent_out) / 2 + 0.5 clamped to [0, 1].

Origin: diffusers 0.42.1, transformers 5.24, PyTorch 2.15, CPU, float32.

Run from the repository root with a python that has torch, diffusers,
transformers and safetensors:
  python3 tests/data/model_sampling/make_playground_data.py
"""
import os

import torch
from diffusers import AutoencoderKL, EDMDPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

MODEL = "tests/data/sdxl/tiny_sdxl_diffusers"
GOLDEN = "tests/data/sdxl/golden.safetensors"
OUT = "tests/data/model_sampling/playground.safetensors"
LATENTS_MEAN = [-1.6574, 1.886, -1.383, 2.5155]
LATENTS_STD = [8.4927, 5.9022, 6.5498, 5.2299]
SCALING = 0.5
SCHEDULER = dict(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, sigma_schedule="karras", rho=7.0,
                 num_train_timesteps=1000, prediction_type="epsilon", solver_order=2, algorithm_type="dpmsolver++",
                 solver_type="midpoint", lower_order_final=True, euler_at_final=False, final_sigmas_type="zero")


def main():
    torch.set_grad_enabled(False)
    f32 = dict(torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(MODEL, subfolder="vae", latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD,
                                        scaling_factor=SCALING, **f32)
    assert list(vae.config.latents_mean) == LATENTS_MEAN and list(vae.config.latents_std) == LATENTS_STD
    assert vae.config.scaling_factor == SCALING
    scheduler = EDMDPMSolverMultistepScheduler(**SCHEDULER)
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", **f32),
        text_encoder=CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder", **f32),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(MODEL, subfolder="text_encoder_2", **f32),
        tokenizer=None, tokenizer_2=None, scheduler=scheduler).to("cpu")
    pipe.set_progress_bar_config(disable=True)

    golden = load_file(GOLDEN)
    noise = torch.randn(1, 4, 8, 8, generator=torch.manual_seed(42))
    assert torch.equal(noise, golden["run.noise"])
    cond = dict(prompt_embeds=golden["run.positive"], negative_prompt_embeds=golden["run.negative"],
                pooled_prompt_embeds=golden["run.positive_pooled"],
                negative_pooled_prompt_embeds=golden["run.negative_pooled"],
                height=64, width=64, num_inference_steps=4, guidance_scale=5.0)

    g = {"run.noise": noise}
    g["run.edm_latent"] = pipe(**cond, latents=noise.clone(), output_type="latent").images
    g["run.sigmas"] = scheduler.sigmas.float().clone()
    g["run.image"] = torch.from_numpy(pipe(**cond, latents=noise.clone(), output_type="np").images)

    mean = torch.tensor(LATENTS_MEAN).view(1, 4, 1, 1)
    std = torch.tensor(LATENTS_STD).view(1, 4, 1, 1)
    g["run.latent_out"] = g["run.edm_latent"] * std / SCALING + mean
    # the pipeline's decode is this formula: decode the VAE's latent directly
    image = (vae.decode(g["run.latent_out"]).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert (image - g["run.image"]).abs().max() <= 1e-6, (image - g["run.image"]).abs().max()

    g = {k: v.float().contiguous() for k, v in g.items()}
    origin = "diffusers 0.42.1, PyTorch %s, CPU float32 (%s)" % (torch.__version__, os.path.basename(__file__))
    save_file(g, OUT, metadata={"origin": origin})
    os.chmod(OUT, 0o644)
    for k, v in g.items():
        print(k, tuple(v.shape), "max abs %.6g" % v.abs().max().item())
    print("run.sigmas", g["run.sigmas"].tolist())


if __name__ == "__main__":
    main()
