"""Python bindings for kiln, a C runtime for Stable Diffusion.

kiln's C API (runtime/include/kiln.h) exposes ComfyUI's nodes as calls; this
module wraps it with ctypes, node for node:

    Backend                        the device (CPU, Vulkan, CUDA)
    load_checkpoint                CheckpointLoaderSimple, then LoraLoader per LoRA
    Model.set_embeddings           the embeddings folder of a prompt's embedding:NAME
    Model.encode                   CLIPTextEncode
    Model.encode_sdxl              CLIPTextEncodeSDXL's text_g and text_l
    Model.empty_latent             EmptyLatentImage
    Model.vae_encode               VAEEncode (VAEEncodeTiled with a tile_size)
    Model.vae_encode_for_inpaint   VAEEncodeForInpaint (or VAEEncode + SetLatentNoiseMask)
    Model.vae_encode_for_outpaint  ImagePadForOutpaint, then the same
    Latent.repeat                  RepeatLatentBatch
    Latent.save / Latent.load      SaveLatent / LoadLatent
    Latent.upscale_by              LatentUpscaleBy
    Model.load_controlnet          ControlNetLoader
    Model.load_ip_adapter          IPAdapterModelLoader
    load_clip_vision               CLIPVisionLoader
    Model.load_style_model         StyleModelLoader (FLUX.1 Redux)
    StyleModel.apply               CLIPVisionEncode, then StyleModelApply
    Model.ksampler                 KSampler and KSamplerAdvanced, with
                                   ControlNetApplyAdvanced, IPAdapterAdvanced,
                                   InstructPixToPixConditioning, SdxlCond
    Model.vae_decode               VAEDecode (VAEDecodeTiled with a tile_size)
    load_upscale_model             UpscaleModelLoader
    Upscaler.upscale               ImageUpscaleWithModel
    Image.load / Image.save        LoadImage / SaveImage (Image.load_with_mask: its MASK too)
    Mask.load, Mask.grow, ...      LoadImageMask and the mask nodes
    Image.flux_kontext_scale       FluxKontextImageScale
    run_workflow                   a whole API-format workflow

The shared library is found through the environment variable KILN_LIBRARY
(the path of libkiln.so), else on the system's library path. Every failing
call raises KilnError with the library's status name and message; what the
library goes on past (an embedding:NAME with no file) is a KilnWarning
through Python's warnings module.

Objects holding library memory free it when garbage-collected. The loaded
models (Backend, Model, ControlNet, IPAdapter, ClipVision, StyleModel, Upscaler) also
have close() and work as context managers. Each keeps what it was loaded on
alive (a model its backend, a ControlNet its model), as the C API requires,
and closing one first closes what was loaded on it.
"""

import ctypes
import ctypes.util
import json
import os
import warnings
import weakref
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_bool, c_char_p, c_double, c_float, c_int, c_size_t, c_uint8,
                    c_uint64, c_void_p)
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

__all__ = [
    "APG", "Area", "Backend", "ClipVision", "Conditioning", "ControlApply", "ControlNet", "DPMAdaptive", "DualCFG",
    "DeepShrink", "HyperTile", "Hypernetwork", "FreeU", "SAG", "Merge", "LatentOperation", "IPAdapter", "IPAdapterApply", "Image", "KilnError", "Latent", "Lora", "Mask", "Model", "PerpNeg",
    "SASolver", "SdxlCond", "SkipLayerGuidance", "StyleModel", "Upscaler", "load_checkpoint", "load_clip_vision",
    "load_upscale_model", "run_workflow", "version",
]


def _load_library():
    """The libkiln shared library: $KILN_LIBRARY, else the system's search."""
    path = os.environ.get("KILN_LIBRARY") or ctypes.util.find_library("kiln")
    if not path:
        raise ImportError("kiln: libkiln not found; set KILN_LIBRARY to the path of libkiln.so "
                          "(cmake --build build --target kiln_shared makes build/lib/libkiln.so)")
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"kiln: cannot load {path} (set KILN_LIBRARY to the path of libkiln.so): {e}") from e


_lib = _load_library()
# The C library's allocator: Image.from_rgb's pixels are released by
# kiln_image_free with free(), so they must come from this malloc.
_libc = ctypes.CDLL(None)
_libc.malloc.argtypes = [c_size_t]
_libc.malloc.restype = c_void_p

_KILN_OK = 0
_KILN_ERR_CANCELLED = 8


# ---- the C structs, field for field as kiln.h declares them ----------------

class _BackendConfig(Structure):
    _fields_ = [("device", c_int), ("threads", c_int), ("compute", c_char_p)]


class _Lora(Structure):
    _fields_ = [("path", c_char_p), ("unet_strength", c_double), ("clip_strength", c_double)]


class _Conditioning(Structure):
    _fields_ = [("data", POINTER(c_float)), ("tokens", c_int), ("dim", c_int), ("pooled", POINTER(c_float)),
                ("pooled_dim", c_int)]


class _Latent(Structure):
    _fields_ = [("data", POINTER(c_float)), ("batch", c_int), ("channels", c_int), ("height", c_int),
                ("width", c_int), ("noise_mask", POINTER(c_float)), ("mask_h", c_int), ("mask_w", c_int),
                ("concat", POINTER(c_float)), ("batch_index", POINTER(c_int))]


class _Image(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("channels", c_int), ("pixels", POINTER(c_uint8))]


class _Mask(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("weights", POINTER(c_float))]


class _PngText(Structure):
    _fields_ = [("key", c_char_p), ("value", c_char_p)]


class _ControlApply(Structure):
    _fields_ = [("controlnet", c_void_p), ("image", POINTER(_Image)), ("strength", c_double),
                ("start_percent", c_double), ("end_percent", c_double), ("union_type", c_char_p),
                ("mask", POINTER(_Image)), ("positive_only", c_bool)]


class _IPAdapterApply(Structure):
    _fields_ = [("adapter", c_void_p), ("clip_vision", c_void_p), ("image", POINTER(_Image)), ("weight", c_double),
                ("start_percent", c_double), ("end_percent", c_double), ("image_count", c_int)]


class _SdxlCond(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("crop_w", c_int), ("crop_h", c_int), ("target_width", c_int),
                ("target_height", c_int), ("aesthetic", c_double), ("negative_aesthetic", c_double)]


_ProgressFn = CFUNCTYPE(c_int, c_void_p, c_int, c_int, POINTER(c_float))


_WroteFn = CFUNCTYPE(None, c_void_p, c_char_p)


class _WorkflowOptions(Structure):
    _fields_ = [("model_dirs", POINTER(c_char_p)), ("nmodel_dirs", c_int), ("progress", _ProgressFn),
                ("progress_ctx", c_void_p), ("tokenizer", c_char_p), ("config", c_char_p),
                ("embeddings", c_char_p), ("output_dir", c_char_p), ("wrote", _WroteFn), ("wrote_ctx", c_void_p)]


class _MergeBlock(Structure):
    _fields_ = [("prefix", c_char_p), ("ratio", c_double)]


class _Merge(Structure):
    _fields_ = [("path", c_char_p), ("kind", c_int), ("ratio", c_double), ("text_encoders", c_bool),
                ("blocks", POINTER(_MergeBlock)), ("nblocks", c_int)]


class _AttentionMultiply(Structure):
    _fields_ = [("q", c_double), ("k", c_double), ("v", c_double), ("out", c_double)]


class _ModelParts(Structure):
    _fields_ = [("vae", c_char_p), ("text_encoders", c_char_p * 3), ("tokenizer", c_char_p), ("config", c_char_p),
                ("weight_dtype", c_char_p), ("merges", POINTER(_Merge)), ("nmerges", c_int),
                ("self_attention", POINTER(_AttentionMultiply)), ("cross_attention", POINTER(_AttentionMultiply)),
                ("clip_attention", POINTER(_AttentionMultiply))]


class _SkipLayerGuidance(Structure):
    _fields_ = [("double_layers", POINTER(c_int)), ("double_count", c_int), ("single_layers", POINTER(c_int)),
                ("single_count", c_int), ("scale", c_double), ("start_percent", c_double),
                ("end_percent", c_double), ("rescaling_scale", c_double), ("uncond_only", c_bool)]


class _ConditioningPart(Structure):
    _fields_ = [("cond", POINTER(_Conditioning)), ("start_percent", c_double), ("end_percent", c_double),
                ("mask", POINTER(c_float)), ("mask_w", c_int), ("mask_h", c_int), ("strength", c_double),
                ("area_x", c_int), ("area_y", c_int), ("area_w", c_int), ("area_h", c_int),
                ("fraction_x", c_double), ("fraction_y", c_double), ("fraction_w", c_double),
                ("fraction_h", c_double), ("mask_bounds", c_bool), ("area_strength", c_double)]


class _Sigmas(Structure):
    _fields_ = [("values", POINTER(c_float)), ("count", c_int)]


class _SamplerOptions(Structure):
    _fields_ = [("eta", c_double), ("s_noise", c_double), ("lms_order", c_int), ("solver_type", c_char_p),
                ("max_stage", c_int), ("r", c_double), ("sa_solver_custom", c_bool),
                ("sde_start_percent", c_double), ("sde_end_percent", c_double), ("predictor_order", c_int),
                ("corrector_order", c_int), ("simple_order_2", c_bool), ("dpm_adaptive_custom", c_bool),
                ("order", c_int), ("rtol", c_double), ("atol", c_double), ("h_init", c_double), ("pcoeff", c_double),
                ("icoeff", c_double), ("dcoeff", c_double), ("accept_safety", c_double),
                ("euler_cfg_pp_alternative", c_bool)]


class _FreeU(Structure):
    _fields_ = [("b1", c_double), ("b2", c_double), ("s1", c_double), ("s2", c_double), ("v2", c_bool)]


class _LatentOperation(Structure):
    _fields_ = [("kind", c_int), ("multiplier", c_double), ("sharpen_radius", c_int), ("sigma", c_double),
                ("alpha", c_double)]


class _SAG(Structure):
    _fields_ = [("scale", c_double), ("blur_sigma", c_double)]


class _DeepShrink(Structure):
    _fields_ = [("block_number", c_int), ("downscale_factor", c_double), ("start_percent", c_double),
                ("end_percent", c_double), ("downscale_after_skip", c_bool), ("downscale_method", c_char_p),
                ("upscale_method", c_char_p)]


class _HyperTile(Structure):
    _fields_ = [("tile_size", c_int), ("swap_size", c_int), ("max_depth", c_int), ("scale_depth", c_bool)]


class _StepCache(Structure):
    _fields_ = [("kind", c_int), ("reuse_threshold", c_double), ("start_percent", c_double),
                ("end_percent", c_double)]


class _FreSca(Structure):
    _fields_ = [("scale_low", c_double), ("scale_high", c_double), ("freq_cutoff", c_int)]


class _KSamplerParams(Structure):
    _fields_ = [("seed", c_uint64), ("steps", c_int), ("cfg", c_double), ("sampler_name", c_char_p),
                ("scheduler", c_char_p), ("denoise", c_double), ("control", POINTER(_ControlApply)),
                ("control_count", c_int),
                ("ip_adapter", POINTER(_IPAdapterApply)), ("ip_adapter_count", c_int),
                ("edit_latent", POINTER(_Latent)),
                ("sdxl", POINTER(_SdxlCond)), ("negative_sdxl", POINTER(_SdxlCond)),
                ("start_at_step", c_int), ("end_at_step", c_int),
                ("leftover_noise", c_bool), ("disable_noise", c_bool),
                ("progress", _ProgressFn), ("progress_ctx", c_void_p), ("flux_guidance", c_double),
                ("negative_flux_guidance", c_double), ("differential_diffusion", c_double),
                ("rescale_cfg", c_double), ("cfg_zero_star", c_bool), ("apg", c_bool), ("apg_eta", c_double),
                ("apg_norm_threshold", c_double), ("apg_momentum", c_double), ("tcfg", c_bool), ("mahiro", c_bool),
                ("cfg_norm", c_double), ("epsilon_scaling", c_double),
                ("reference", POINTER(_Latent)), ("reference_count", c_int),
                ("negative_reference", POINTER(_Latent)), ("negative_reference_count", c_int),
                ("reference_method", c_int), ("negative_reference_method", c_int),
                ("skip_layer_guidance", POINTER(_SkipLayerGuidance)),
                ("positive_parts", POINTER(_ConditioningPart)), ("negative_parts", POINTER(_ConditioningPart)),
                ("positive_part_count", c_int), ("negative_part_count", c_int), ("sigmas", POINTER(_Sigmas)),
                ("sampler_options", POINTER(_SamplerOptions)), ("denoised_output", POINTER(_Latent)),
                ("dual_cfg_cond2", POINTER(_Conditioning)), ("cfg_cond2_negative", c_double),
                ("dual_cfg_nested", c_bool), ("perp_neg_empty", POINTER(_Conditioning)), ("perp_neg_scale", c_double),
                ("freeu", POINTER(_FreeU)), ("pag_scale", c_double), ("sag", POINTER(_SAG)),
                ("deep_shrink", POINTER(_DeepShrink)), ("hypertile", POINTER(_HyperTile)),
                ("hypernetworks", POINTER(c_void_p)), ("hypernetwork_count", c_int),
                ("cfg_operation", POINTER(_LatentOperation)), ("step_cache", POINTER(_StepCache)),
                ("steps_skipped", POINTER(c_int)), ("fresca", POINTER(_FreSca)), ("pixart_width", c_double),
                ("pixart_height", c_double), ("negative_pixart_width", c_double),
                ("negative_pixart_height", c_double)]


# ---- errors and the functions' signatures --------------------------------

class KilnError(Exception):
    """A kiln call failed: .status is the status's name ("KILN_ERR_IO"),
    .message what kiln_last_error() said (it names the file, tensor or
    argument at fault)."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KilnWarning(UserWarning):
    """What the library went on past, as ComfyUI logs a warning and goes
    on: a prompt's embedding:NAME with no file, or with vectors of another
    text encoder's width."""


_WarningFn = CFUNCTYPE(None, c_void_p, c_char_p)


@_WarningFn
def _warn(ctx, message):
    warnings.warn(message.decode(errors="replace"), KilnWarning, stacklevel=2)


def _check(result, func, args):
    """errcheck of every call returning a kiln_status."""
    if result != _KILN_OK:
        raise KilnError(_lib.kiln_status_name(result).decode(), _lib.kiln_last_error().decode(errors="replace"))
    return result


def _c_seed(seed) -> int:
    """A noise seed as ComfyUI takes it: 0 to 2**64 - 1."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed {seed}: must be from 0 to 2**64 - 1")
    return seed


def _declare(name, restype, *argtypes):
    func = getattr(_lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    if restype is c_int:  # the functions of kiln.h that return an int return a kiln_status
        func.errcheck = _check


_declare("kiln_last_error", c_char_p)
_lib.kiln_set_warning_handler.restype = None
_lib.kiln_set_warning_handler.argtypes = [_WarningFn, c_void_p]
_lib.kiln_set_warning_handler(_warn, None)
_declare("kiln_workflow_run", c_int, c_void_p, c_char_p, POINTER(_WorkflowOptions), POINTER(POINTER(_Image)),
         POINTER(c_int))
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None
_declare("kiln_status_name", c_char_p, c_int)
_declare("kiln_version", c_char_p)
_declare("kiln_backend_open", c_int, c_char_p, POINTER(_BackendConfig), POINTER(c_void_p))
_declare("kiln_backend_device_name", c_char_p, c_void_p)
_declare("kiln_backend_free", None, c_void_p)
_declare("kiln_checkpoint_load_parts", c_int, c_void_p, c_char_p, POINTER(_ModelParts), POINTER(_Lora), c_int,
         POINTER(c_void_p))
_declare("kiln_model_free", None, c_void_p)
_declare("kiln_model_family", c_char_p, c_void_p)
_declare("kiln_model_save_checkpoint", c_int, c_void_p, c_char_p)
_declare("kiln_model_save_vae", c_int, c_void_p, c_char_p)
_declare("kiln_model_save_diffusion_model", c_int, c_void_p, c_char_p)
_declare("kiln_model_variant", c_char_p, c_void_p)
_declare("kiln_model_prediction", c_char_p, c_void_p)
_declare("kiln_model_set_prediction", c_int, c_void_p, c_char_p)
_declare("kiln_model_set_embeddings", c_int, c_void_p, c_char_p)
_declare("kiln_model_set_t5_tokenizer_options", c_int, c_void_p, c_int, c_int)
_declare("kiln_model_set_zsnr", c_int, c_void_p, c_bool)
_declare("kiln_model_set_continuous_edm", c_int, c_void_p, c_char_p, c_double, c_double)
_declare("kiln_model_set_flux_shift", c_int, c_void_p, c_double)
_declare("kiln_model_reset_sampling", c_int, c_void_p)
_declare("kiln_model_native_size", None, c_void_p, POINTER(c_int), POINTER(c_int))
_declare("kiln_text_encode", c_int, c_void_p, c_char_p, c_int, POINTER(_Conditioning))
_declare("kiln_reference_method_from_name", c_int, c_char_p, POINTER(c_int))
_declare("kiln_text_encode_flux", c_int, c_void_p, c_char_p, c_char_p, POINTER(_Conditioning))
_declare("kiln_text_encode_sd3", c_int, c_void_p, c_char_p, c_char_p, c_char_p, POINTER(_Conditioning))
_declare("kiln_text_encode_sdxl", c_int, c_void_p, c_char_p, c_char_p, c_int, POINTER(_Conditioning))
_declare("kiln_conditioning_free", None, POINTER(_Conditioning))
_declare("kiln_conditioning_zero_out", c_int, POINTER(_Conditioning), POINTER(_Conditioning))
_declare("kiln_empty_latent", c_int, c_void_p, c_int, c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_free", None, POINTER(_Latent))
_declare("kiln_latent_repeat", c_int, POINTER(_Latent), c_int, POINTER(_Latent))
_declare("kiln_latent_from_batch", c_int, POINTER(_Latent), c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_upscale", c_int, POINTER(_Latent), c_char_p, c_int, c_int, c_bool, POINTER(_Latent))
_declare("kiln_latent_upscale_by", c_int, POINTER(_Latent), c_char_p, c_double, POINTER(_Latent))
_declare("kiln_latent_composite", c_int, POINTER(_Latent), POINTER(_Latent), c_int, c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_composite_masked", c_int, POINTER(_Latent), POINTER(_Latent), c_int, c_int, c_bool,
         POINTER(c_float), c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_blend", c_int, POINTER(_Latent), POINTER(_Latent), c_double, POINTER(_Latent))
_declare("kiln_latent_combine", c_int, POINTER(_Latent), POINTER(_Latent), c_char_p, c_double, POINTER(_Latent))
_declare("kiln_latent_multiply", c_int, POINTER(_Latent), c_double, POINTER(_Latent))
_declare("kiln_latent_apply_operation", c_int, POINTER(_Latent), POINTER(_LatentOperation), POINTER(_Latent))
_declare("kiln_latent_batch", c_int, POINTER(_Latent), POINTER(_Latent), POINTER(_Latent))
_declare("kiln_latent_crop", c_int, POINTER(_Latent), c_int, c_int, c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_concat", c_int, POINTER(_Latent), POINTER(_Latent), c_char_p, POINTER(_Latent))
_declare("kiln_latent_cut", c_int, POINTER(_Latent), c_char_p, c_int, c_int, POINTER(_Latent))
_declare("kiln_latent_save", c_int, POINTER(_Latent), c_char_p, c_char_p)
_declare("kiln_latent_load", c_int, c_char_p, POINTER(_Latent))
_declare("kiln_latent_batch_seed_behavior", c_int, POINTER(_Latent), c_char_p, POINTER(_Latent))
_declare("kiln_latent_flip_rotate", c_int, POINTER(_Latent), c_bool, c_bool, c_int, POINTER(_Latent))
_declare("kiln_image_load", c_int, c_char_p, POINTER(_Image))
_declare("kiln_image_load_with_mask", c_int, c_char_p, POINTER(_Image), POINTER(_Mask))
_declare("kiln_mask_free", None, POINTER(_Mask))
_declare("kiln_image_empty", c_int, c_int, c_int, ctypes.c_uint32, POINTER(_Image))
_declare("kiln_image_invert", c_int, POINTER(_Image), POINTER(_Image))
_declare("kiln_image_flip_rotate", c_int, POINTER(_Image), c_bool, c_bool, c_int, POINTER(_Image))
_declare("kiln_image_blend", c_int, POINTER(_Image), POINTER(_Image), c_double, c_char_p, POINTER(_Image))
_declare("kiln_image_blur", c_int, POINTER(_Image), c_int, c_double, POINTER(_Image))
_declare("kiln_image_canny", c_int, POINTER(_Image), c_double, c_double, POINTER(_Image))
_declare("kiln_image_morphology", c_int, POINTER(_Image), c_char_p, c_int, POINTER(_Image))
_declare("kiln_image_stitch", c_int, POINTER(_Image), POINTER(_Image), c_char_p, c_bool, c_int, c_char_p, POINTER(_Image))
_declare("kiln_image_resize_and_pad", c_int, POINTER(_Image), c_int, c_int, c_char_p, c_char_p, POINTER(_Image))
_declare("kiln_image_scale_to_max_dimension", c_int, POINTER(_Image), c_char_p, c_int, POINTER(_Image))
_declare("kiln_image_sharpen", c_int, POINTER(_Image), c_int, c_double, c_double, POINTER(_Image))
_declare("kiln_image_composite_masked", c_int, POINTER(_Image), POINTER(_Image), c_int, c_int, c_bool, POINTER(_Mask),
         POINTER(_Image))
_declare("kiln_mask_load", c_int, c_char_p, c_char_p, POINTER(_Mask))
_declare("kiln_mask_solid", c_int, c_float, c_int, c_int, POINTER(_Mask))
_declare("kiln_mask_from_image", c_int, POINTER(_Image), c_char_p, POINTER(_Mask))
_declare("kiln_mask_from_color", c_int, POINTER(_Image), ctypes.c_uint32, POINTER(_Mask))
_declare("kiln_image_add_noise", c_int, POINTER(_Image), c_int, ctypes.c_uint64, c_double, POINTER(_Image))
_declare("kiln_mask_to_image", c_int, POINTER(_Mask), POINTER(_Image))
_declare("kiln_mask_picture", c_int, POINTER(_Mask), POINTER(_Image))
_declare("kiln_mask_invert", c_int, POINTER(_Mask), POINTER(_Mask))
_declare("kiln_mask_threshold", c_int, POINTER(_Mask), c_float, POINTER(_Mask))
_declare("kiln_mask_crop", c_int, POINTER(_Mask), c_int, c_int, c_int, c_int, POINTER(_Mask))
_declare("kiln_mask_composite", c_int, POINTER(_Mask), POINTER(_Mask), c_int, c_int, c_char_p, POINTER(_Mask))
_declare("kiln_mask_feather", c_int, POINTER(_Mask), c_int, c_int, c_int, c_int, POINTER(_Mask))
_declare("kiln_mask_grow", c_int, POINTER(_Mask), c_int, c_bool, POINTER(_Mask))
_declare("kiln_image_save", c_int, c_char_p, POINTER(_Image), POINTER(_PngText), c_size_t)
_declare("kiln_image_free", None, POINTER(_Image))
_declare("kiln_vae_decode", c_int, c_void_p, POINTER(_Latent), POINTER(_Image), c_int)
_declare("kiln_vae_decode_tiled", c_int, c_void_p, POINTER(_Latent), c_int, c_int, POINTER(_Image), c_int)
_declare("kiln_vae_encode", c_int, c_void_p, POINTER(_Image), c_int, POINTER(_Latent))
_declare("kiln_vae_encode_tiled", c_int, c_void_p, POINTER(_Image), c_int, c_int, c_int, POINTER(_Latent))
_declare("kiln_vae_encode_for_inpaint_mask", c_int, c_void_p, POINTER(_Image), POINTER(_Mask), c_int,
         POINTER(_Latent))
_declare("kiln_vae_encode_for_outpaint", c_int, c_void_p, POINTER(_Image), c_int, c_int, c_int, c_int, c_int,
         POINTER(_Latent))
_declare("kiln_controlnet_load", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_declare("kiln_controlnet_free", None, c_void_p)
_declare("kiln_ip_adapter_load", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_declare("kiln_ip_adapter_free", None, c_void_p)
_declare("kiln_clip_vision_load", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_declare("kiln_clip_vision_free", None, c_void_p)
_declare("kiln_style_model_load", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_declare("kiln_style_model_free", None, c_void_p)
_declare("kiln_hypernetwork_load", c_int, c_void_p, c_char_p, c_double, POINTER(c_void_p))
_declare("kiln_hypernetwork_free", None, c_void_p)
_declare("kiln_style_model_apply", c_int, c_void_p, c_void_p, POINTER(_Image), c_bool, c_double,
         POINTER(_Conditioning), POINTER(_Conditioning))
_declare("kiln_flux_kontext_image_scale", c_int, POINTER(_Image), POINTER(_Image))
_declare("kiln_image_scale", c_int, POINTER(_Image), c_char_p, c_int, c_int, c_bool, POINTER(_Image))
_declare("kiln_upscale_model_load", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_declare("kiln_upscaler_free", None, c_void_p)
_declare("kiln_image_upscale_with_model", c_int, c_void_p, POINTER(_Image), POINTER(_Image))
_declare("kiln_sigmas_free", None, POINTER(_Sigmas))
_declare("kiln_manual_sigmas", c_int, c_char_p, POINTER(_Sigmas))
_declare("kiln_basic_scheduler", c_int, c_void_p, c_char_p, c_int, c_double, POINTER(_Sigmas))
_declare("kiln_sd_turbo_scheduler", c_int, c_void_p, c_int, c_double, POINTER(_Sigmas))
_declare("kiln_beta_sampling_scheduler", c_int, c_void_p, c_int, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_align_your_steps_scheduler", c_int, c_char_p, c_int, c_double, POINTER(_Sigmas))
_declare("kiln_optimal_steps_scheduler", c_int, c_char_p, c_int, c_double, POINTER(_Sigmas))
_declare("kiln_karras_scheduler", c_int, c_int, c_double, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_exponential_scheduler", c_int, c_int, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_polyexponential_scheduler", c_int, c_int, c_double, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_laplace_scheduler", c_int, c_int, c_double, c_double, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_vp_scheduler", c_int, c_int, c_double, c_double, c_double, POINTER(_Sigmas))
_declare("kiln_sigmas_split", c_int, POINTER(_Sigmas), c_int, POINTER(_Sigmas), POINTER(_Sigmas))
_declare("kiln_sigmas_split_denoise", c_int, POINTER(_Sigmas), c_double, POINTER(_Sigmas), POINTER(_Sigmas))
_declare("kiln_sigmas_flip", c_int, POINTER(_Sigmas), POINTER(_Sigmas))
_declare("kiln_sigmas_set_first", c_int, POINTER(_Sigmas), c_double, POINTER(_Sigmas))
_declare("kiln_sampling_percent_to_sigma", c_int, c_void_p, c_double, c_bool, POINTER(c_double))
_declare("kiln_add_noise", c_int, c_void_p, c_uint64, c_bool, POINTER(_Sigmas), POINTER(_Latent), POINTER(_Latent))
_declare("kiln_sigmas_extend", c_int, POINTER(_Sigmas), c_int, c_double, c_double, c_char_p, POINTER(_Sigmas))
_declare("kiln_ksampler", c_int, c_void_p, POINTER(_KSamplerParams), POINTER(_Conditioning),
         POINTER(_Conditioning), POINTER(_Latent), POINTER(_Latent))


def _c_int(name: str, value: int) -> int:
    """value as a C int, refused rather than wrapped around when out of range."""
    value = int(value)
    if not -2**31 <= value < 2**31:
        raise ValueError(f"{name} {value}: out of range")
    return value


def _path(path) -> bytes:
    return os.fsencode(path)


def _c_sigmas(sigmas: Sequence[float]) -> _Sigmas:
    """A list of sigmas as kiln_sigmas (its array alive as long as the struct)."""
    values = [float(x) for x in sigmas]
    return _Sigmas((c_float * max(len(values), 1))(*values), len(values))


def _sigmas_from(function, *args, outputs: int = 1):
    """Calls a kiln function whose last `outputs` arguments are kiln_sigmas
    it fills; their values as lists of floats."""
    made = [_Sigmas() for _ in range(outputs)]
    try:
        function(*args, *(byref(m) for m in made))
        lists = [[m.values[i] for i in range(m.count)] for m in made]
    finally:
        for m in made:
            _lib.kiln_sigmas_free(byref(m))
    return lists[0] if outputs == 1 else tuple(lists)


# ---- SIGMAS: ComfyUI's scheduler nodes and the nodes that cut a list -------
# Sigmas are lists of floats (float32 values), for Model.ksampler(sigmas=...).

def karras_scheduler(steps: int, sigma_max: float = 14.614642, sigma_min: float = 0.0291675,
                     rho: float = 7.0) -> list:
    """KarrasScheduler: sigma^(1/rho) linear from sigma_max to sigma_min, then 0."""
    return _sigmas_from(_lib.kiln_karras_scheduler, _c_int("steps", steps), sigma_max, sigma_min, rho)


def exponential_scheduler(steps: int, sigma_max: float = 14.614642, sigma_min: float = 0.0291675) -> list:
    """ExponentialScheduler: log sigma linear from sigma_max to sigma_min, then 0."""
    return _sigmas_from(_lib.kiln_exponential_scheduler, _c_int("steps", steps), sigma_max, sigma_min)


def polyexponential_scheduler(steps: int, sigma_max: float = 14.614642, sigma_min: float = 0.0291675,
                              rho: float = 1.0) -> list:
    """PolyexponentialScheduler: log sigma from sigma_max to sigma_min along ramp^rho, then 0."""
    return _sigmas_from(_lib.kiln_polyexponential_scheduler, _c_int("steps", steps), sigma_max, sigma_min, rho)


def laplace_scheduler(steps: int, sigma_max: float = 14.614642, sigma_min: float = 0.0291675, mu: float = 0.0,
                      beta: float = 0.5) -> list:
    """LaplaceScheduler: `steps` sigmas, clamped to [sigma_min, sigma_max], no 0 after them."""
    return _sigmas_from(_lib.kiln_laplace_scheduler, _c_int("steps", steps), sigma_max, sigma_min, mu, beta)


def vp_scheduler(steps: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 0.001) -> list:
    """VPScheduler: the variance-preserving SDE's sigmas, then 0."""
    return _sigmas_from(_lib.kiln_vp_scheduler, _c_int("steps", steps), beta_d, beta_min, eps_s)


def align_your_steps_scheduler(model_type: str, steps: int, denoise: float = 1.0) -> list:
    """AlignYourStepsScheduler: NVIDIA's noise levels for "SD1", "SDXL" or "SVD"."""
    return _sigmas_from(_lib.kiln_align_your_steps_scheduler, str(model_type).encode(), _c_int("steps", steps),
                        denoise)


def optimal_steps_scheduler(model_type: str, steps: int, denoise: float = 1.0) -> list:
    """OptimalStepsScheduler: OptimalSteps' noise levels for "FLUX", "Wan" or "Chroma"."""
    return _sigmas_from(_lib.kiln_optimal_steps_scheduler, str(model_type).encode(), _c_int("steps", steps), denoise)


def manual_sigmas(text: str) -> list:
    """ManualSigmas: the numbers in text as the node finds them ("14.6, 3.3, 0")."""
    return _sigmas_from(_lib.kiln_manual_sigmas, str(text).encode())


def split_sigmas(sigmas: Sequence[float], step: int) -> tuple:
    """SplitSigmas: (high, low), the first step + 1 and those from step on."""
    return _sigmas_from(_lib.kiln_sigmas_split, byref(_c_sigmas(sigmas)), _c_int("step", step), outputs=2)


def split_sigmas_denoise(sigmas: Sequence[float], denoise: float) -> tuple:
    """SplitSigmasDenoise: (high, low), low the last round((len - 1) x denoise) + 1."""
    return _sigmas_from(_lib.kiln_sigmas_split_denoise, byref(_c_sigmas(sigmas)), denoise, outputs=2)


def extend_intermediate_sigmas(sigmas: Sequence[float], steps: int = 2, start_at_sigma: float = -1.0,
                               end_at_sigma: float = 12.0, spacing: str = "linear") -> list:
    """ExtendIntermediateSigmas: steps - 1 more sigmas after each one in
    [end_at_sigma, start_at_sigma] (start below 0: no upper end), spaced
    "linear", "cosine" or "sine"."""
    return _sigmas_from(_lib.kiln_sigmas_extend, byref(_c_sigmas(sigmas)), _c_int("steps", steps), start_at_sigma,
                        end_at_sigma, str(spacing).encode())


def flip_sigmas(sigmas: Sequence[float]) -> list:
    """FlipSigmas: the sigmas reversed, a first 0 made 0.0001."""
    return _sigmas_from(_lib.kiln_sigmas_flip, byref(_c_sigmas(sigmas)))


def set_first_sigma(sigmas: Sequence[float], sigma: float) -> list:
    """SetFirstSigma: the sigmas with the first one `sigma`."""
    return _sigmas_from(_lib.kiln_sigmas_set_first, byref(_c_sigmas(sigmas)), sigma)


def version() -> str:
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.kiln_version().decode()


# ---- handles: what is loaded -----------------------------------------------

class _Handle:
    """An opaque kiln handle, freed once by close() or garbage collection.
    It keeps `parent` (what it was loaded on) alive, and closing the parent
    closes it first."""

    _free = None  # the C function releasing the handle

    def __init__(self, handle: int, parent: Optional["_Handle"] = None):
        self._handle = handle
        self._parent = parent
        self._dependents = weakref.WeakSet()  # for close() to close them first
        self._open_dependents = 0  # for __del__, which cannot rely on the weak references
        self._collected = False  # __del__ ran while dependents were open
        if parent is not None:
            parent._dependents.add(self)
            parent._open_dependents += 1

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _ptr(self) -> int:
        if self._handle is None:
            raise ValueError(f"this {type(self).__name__} is closed")
        return self._handle

    def close(self) -> None:
        """Releases the handle, after what was loaded on it (idempotent)."""
        if self._handle is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._release()

    def _release(self) -> None:
        handle, self._handle = self._handle, None
        type(self)._free(handle)
        parent = self._parent
        if parent is not None:
            parent._open_dependents -= 1
            if parent._collected and parent._open_dependents == 0:
                parent._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # The garbage collector finalizes unreachable objects in any order,
        # having cleared the weak references first: a backend may come before
        # its models, and is then released after the last of them.
        if getattr(self, "_handle", None) is None:
            return
        if self._open_dependents:
            self._collected = True
        else:
            self._release()

    def __repr__(self) -> str:
        return f"<kiln.{type(self).__name__}{' closed' if self.closed else ''}>"


def _load(load_function, parent: _Handle, *args) -> int:
    """Calls a kiln_*_load(parent, args..., &out) and returns the handle."""
    handle = c_void_p()
    load_function(parent._ptr(), *args, byref(handle))
    return handle.value


class Backend(_Handle):
    """The device kiln runs on: "cpu", "vulkan", "cuda" or "auto" (CUDA,
    then Vulkan, then the CPU).

    device: the GPU's index as `gen --list-devices` numbers them, -1 to pick
    one (discrete first); threads: CPU worker threads, 0 for all cores;
    compute: the GPU arithmetic, "f32", "f16" or "bf16" (None: the backend's
    choice)."""

    _free = _lib.kiln_backend_free

    def __init__(self, name: str = "auto", device: int = -1, threads: int = 0, compute: Optional[str] = None):
        config = _BackendConfig(_c_int("device", device), _c_int("threads", threads),
                                compute.encode() if compute is not None else None)
        handle = c_void_p()
        _lib.kiln_backend_open(name.encode(), byref(config), byref(handle))
        super().__init__(handle.value)

    @property
    def device_name(self) -> str:
        """What it runs on ("host CPU, 16 threads", the GPU's name ...)."""
        return _lib.kiln_backend_device_name(self._ptr()).decode(errors="replace")

    def __repr__(self) -> str:
        return "<kiln.Backend closed>" if self.closed else f"<kiln.Backend {self.device_name!r}>"


class SkipLayerGuidance(NamedTuple):
    """SkipLayerGuidanceSD3's / SkipLayerGuidanceDiT's inputs (SD3 and Flux):
    the blocks the extra pass leaves out (SD3's joint, Flux's double; Flux's
    single), its scale, its part of the sampling and the DiT node's
    rescaling; uncond_only: SkipLayerGuidanceDiTSimple's, the negative
    prompt's pass itself without the blocks (scale and rescaling unused)."""
    double_layers: Sequence[int] = (7, 8, 9)
    single_layers: Sequence[int] = ()
    scale: float = 3.0
    start_percent: float = 0.01
    end_percent: float = 0.15
    rescaling_scale: float = 0.0
    uncond_only: bool = False


class Lora(NamedTuple):
    """LoraLoader's inputs: a LoRA, LoCon or LoHa file and its strengths."""
    path: Any
    strength_model: float = 1.0
    strength_clip: float = 1.0


class Merge(NamedTuple):
    """A model merging node at load, before the LoRAs: kind "simple"
    (ModelMergeSimple: this model's weights times ratio plus path's times
    1 - ratio), "add" (ModelMergeAdd) or "subtract" (ModelMergeSubtract:
    (this - path's) times ratio, its multiplier); on the diffusion model, or
    with text_encoders on the text encoders (CLIPMergeSimple, CLIPMergeAdd,
    CLIPMergeSubtract). path: a checkpoint of the same family. blocks:
    (prefix, ratio) pairs for a simple merge of a UNet by blocks
    (ModelMergeBlocks' ("input", r), ("middle", r), ("out", r), or
    ModelMergeSD1's "input_blocks.4." and the like): a tensor takes the
    longest prefix's ratio, else the first's."""
    path: Any
    ratio: float = 1.0
    kind: str = "simple"
    text_encoders: bool = False
    blocks: Sequence = ()


_MERGE_KINDS = {"simple": 0, "add": 1, "subtract": 2}


def load_checkpoint(backend: Backend, path=None, loras=(), vae=None, text_encoders=(), tokenizer=None,
                    config=None, weight_dtype=None, merges=(), self_attention=None, cross_attention=None,
                    clip_attention=None, embeddings=None) -> "Model":
    """CheckpointLoaderSimple, then LoraLoader for each of `loras` (Lora
    tuples, merged into the weights in order).

    path: a single-file .safetensors or .gguf, or a diffusers folder; None
    loads the model embedded in libkiln (KilnError KILN_ERR_UNSUPPORTED when
    this build has none). Files beside it, as UNETLoader, DualCLIPLoader,
    TripleCLIPLoader and VAELoader take them (path then may be a transformer
    or UNet alone): vae, a VAE in place of the checkpoint's; text_encoders,
    Flux's CLIP-L and T5, PixArt's T5, an SD UNet's CLIP, SDXL's CLIP-L and
    bigG or SD3's CLIP-L, bigG and T5; tokenizer,
    T5's spiece.model (a T5 .gguf file carries its own); config, a diffusers
    folder whose configs (and tokenizer) apply to single files; weight_dtype,
    UNETLoader's: the diffusion model's linear weights converted at load
    ("fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2", or "q8_0", "q5_1", "q5_0",
    "q4_1", "q4_0" as stable-diffusion.cpp's --type; None: as stored);
    merges, Merge tuples applied in order before the LoRAs;
    self_attention and cross_attention, UNetSelfAttentionMultiply's and
    UNetCrossAttentionMultiply's (q, k, v, out) factors, after the merges;
    clip_attention, CLIPAttentionMultiply's on the text encoders;
    embeddings, the folder of the prompts' embedding:NAME (Model.set_embeddings)."""
    loras = [Lora(*lora) for lora in loras]
    c_loras = (_Lora * max(len(loras), 1))(*(_Lora(_path(lora.path), lora.strength_model, lora.strength_clip)
                                               for lora in loras))
    encoders = [_path(e) for e in text_encoders]
    if len(encoders) > 3:
        raise ValueError("text_encoders: at most 3 (SD3's CLIP-L, bigG and T5)")
    parts = _ModelParts(vae=_path(vae) if vae is not None else None,
                        tokenizer=_path(tokenizer) if tokenizer is not None else None,
                        config=_path(config) if config is not None else None,
                        weight_dtype=weight_dtype.encode() if weight_dtype is not None else None)
    for i, e in enumerate(encoders):
        parts.text_encoders[i] = e
    merges = [Merge(*merge) for merge in merges]
    for merge in merges:
        if merge.kind not in _MERGE_KINDS:
            raise ValueError(f"merge kind {merge.kind!r}: simple, add or subtract")
    c_blocks = [(_MergeBlock * max(len(mg.blocks), 1))(*(_MergeBlock(prefix.encode(), ratio)
                                                          for prefix, ratio in mg.blocks)) for mg in merges]
    c_merges = (_Merge * max(len(merges), 1))(*(_Merge(_path(mg.path), _MERGE_KINDS[mg.kind], mg.ratio,
                                                       bool(mg.text_encoders), blocks, len(mg.blocks))
                                                for mg, blocks in zip(merges, c_blocks)))
    parts.merges, parts.nmerges = c_merges, len(merges)
    if self_attention is not None:
        parts.self_attention = ctypes.pointer(_AttentionMultiply(*self_attention))
    if cross_attention is not None:
        parts.cross_attention = ctypes.pointer(_AttentionMultiply(*cross_attention))
    if clip_attention is not None:
        parts.clip_attention = ctypes.pointer(_AttentionMultiply(*clip_attention))
    handle = _load(_lib.kiln_checkpoint_load_parts, backend, _path(path) if path is not None else None, byref(parts),
                   c_loras, len(loras))
    model = Model(handle, backend)
    if embeddings is not None:
        model.set_embeddings(embeddings)
    return model


def load_clip_vision(backend: Backend, path) -> "ClipVision":
    """CLIPVisionLoader: the image encoder an IP-Adapter was trained with
    (CLIP ViT-H/14 or bigG/14, transformers' layout)."""
    return ClipVision(_load(_lib.kiln_clip_vision_load, backend, _path(path)), backend)


def run_workflow(backend: Backend, workflow, model_dirs=(), progress=None, tokenizer=None, config=None,
                 embeddings=None, output_dir=None, files=None) -> list:
    """A ComfyUI workflow in the API format (a JSON string, or the dict it
    parses to) run node by node: the images of its SaveImage and
    PreviewImage nodes, in the order of their ids. File names in it are
    looked up as given, then in each of model_dirs (in ComfyUI's subfolders:
    checkpoints/, loras/, controlnet/, upscale_models/, diffusion_models/,
    text_encoders/, vae/, input/; then at the top). progress(step, total) as
    Model.ksampler's, for every KSampler. tokenizer and config as
    load_checkpoint's, for the checkpoints whose files lack them. embeddings:
    the folder of the prompts' embedding:NAME; None: the first of model_dirs
    with an embeddings/ subfolder. output_dir: where CheckpointSave nodes
    write (None: they are refused); the paths they write are appended to
    `files` where it is a list."""
    text = workflow if isinstance(workflow, str) else json.dumps(workflow)
    dirs = [_path(d) for d in model_dirs]
    options = _WorkflowOptions(model_dirs=(c_char_p * max(len(dirs), 1))(*dirs), nmodel_dirs=len(dirs),
                               tokenizer=_path(tokenizer) if tokenizer is not None else None,
                               config=_path(config) if config is not None else None,
                               embeddings=_path(embeddings) if embeddings is not None else None,
                               output_dir=_path(output_dir) if output_dir is not None else None)
    wrote = _WroteFn(lambda ctx, path: files.append(path.decode()) if files is not None else None)
    options.wrote = wrote
    callback = _Progress(progress) if progress is not None else None
    if callback is not None:
        options.progress = callback.c_function
    images, count = POINTER(_Image)(), c_int()
    try:
        _lib.kiln_workflow_run(backend._ptr(), text.encode(), byref(options), byref(images), byref(count))
    except KilnError:
        if callback is not None and callback.exception is not None:
            raise callback.exception from None
        raise
    # the Images take over the pixels; the array itself goes back to the C library's allocator
    out = [Image._adopt(images[i]) for i in range(count.value)]
    _libc.free(ctypes.cast(images, c_void_p))
    return out


def load_upscale_model(backend: Backend, path) -> "Upscaler":
    """UpscaleModelLoader: an ESRGAN (RRDBNet x4) or Real-ESRGAN compact
    (SRVGGNetCompact, any scale) model, .safetensors or .pth."""
    return Upscaler(_load(_lib.kiln_upscale_model_load, backend, _path(path)), backend)


class Model(_Handle):
    """A loaded checkpoint (UNet, text encoders, VAE) on a backend; made by
    load_checkpoint. Used by one thread at a time."""

    _free = _lib.kiln_model_free

    @property
    def backend(self) -> Backend:
        return self._parent

    @property
    def family(self) -> str:
        """"sd1", "sd2", "sdxl", "sdxl-refiner", "pixart", "flux", "chroma" or "sd3"."""
        return _lib.kiln_model_family(self._ptr()).decode()

    def save_checkpoint(self, path) -> None:
        """CheckpointSave: the weights as loaded (LoRAs and merges in them) as
        one .safetensors file in the original single-file layout (SD 1.x, 2.x
        and XL; Flux, Chroma, SD3 and PixArt loaded from their original single
        files, in those files' names, the VAE and text encoders beside as
        ComfyUI writes them). The file appears whole or not at all."""
        _lib.kiln_model_save_checkpoint(self._ptr(), _path(path))

    def save_vae(self, path) -> None:
        """VAESave: the model's VAE (a vae= file's too) in the LDM names
        ComfyUI's VAESave writes, any family."""
        _lib.kiln_model_save_vae(self._ptr(), _path(path))

    def save_diffusion_model(self, path) -> None:
        """ModelSave: the diffusion model alone (LoRAs and merges in it)
        under model.diffusion_model.: SD 1.x, 2.x and XL, and a DiT from its
        original single file in that file's names."""
        _lib.kiln_model_save_diffusion_model(self._ptr(), _path(path))

    @property
    def variant(self) -> str:
        """"txt2img", "inpaint" or "instruct-pix2pix": what its UNet takes."""
        return _lib.kiln_model_variant(self._ptr()).decode()

    @property
    def prediction(self) -> str:
        """"eps" or "v", as read off the checkpoint, or as set by
        set_prediction ("lcm" too)."""
        return _lib.kiln_model_prediction(self._ptr()).decode()

    def set_embeddings(self, folder) -> None:
        """Where a prompt's embedding:NAME (textual inversion, as ComfyUI's
        models/embeddings) is looked up: NAME, NAME.safetensors, .pt or .bin
        in the folder or one below it; None: nowhere (each such NAME is left
        out with a KilnWarning)."""
        _lib.kiln_model_set_embeddings(self._ptr(), _path(folder) if folder is not None else None)

    def set_t5_tokenizer_options(self, min_padding: int = 0, min_length: int = 0) -> None:
        """T5TokenizerOptions: every prompt's T5 ids encoded from now on get
        min_padding pad tokens after EOS, then pads up to min_length ids (in
        place of the model's own least length: Flux's 256, SD3's 77). Both
        -1: the tokenizer as it was."""
        _lib.kiln_model_set_t5_tokenizer_options(self._ptr(), int(min_padding), int(min_length))

    def set_prediction(self, sampling: str, zsnr: bool = False) -> None:
        """ModelSamplingDiscrete: "eps", "v_prediction" or "lcm" (an LCM
        model or LoRA), with zsnr the sigmas rescaled to zero terminal
        SNR."""
        _lib.kiln_model_set_prediction(self._ptr(), sampling.encode())
        _lib.kiln_model_set_zsnr(self._ptr(), bool(zsnr))

    def set_continuous_edm(self, sampling: str, sigma_max: float = 120.0, sigma_min: float = 0.002) -> None:
        """ModelSamplingContinuousEDM: continuous sigmas from sigma_min to
        sigma_max with sampling "eps", "v_prediction", "edm", "cosxl" or
        "edm_playground_v2.5" (edm with Playground v2.5's per-channel latent
        format); set_prediction goes back to the discrete table."""
        _lib.kiln_model_set_continuous_edm(self._ptr(), sampling.encode(), sigma_max, sigma_min)

    def reset_sampling(self) -> None:
        """Back to how the checkpoint samples as loaded (what it detected:
        a Playground v2.5 or CosXL file's continuous sigmas, a ztsnr file's
        zsnr, a folder's EDM scheduler)."""
        _lib.kiln_model_reset_sampling(self._ptr())

    def set_flux_shift(self, shift: float) -> None:
        """ModelSamplingFlux's shift of a Flux model's sigmas, or
        ModelSamplingSD3's of an SD3 model's (0: its own)."""
        _lib.kiln_model_set_flux_shift(self._ptr(), c_double(shift))

    @property
    def native_size(self) -> tuple:
        """(width, height) in pixels the model was trained at."""
        w, h = c_int(), c_int()
        _lib.kiln_model_native_size(self._ptr(), byref(w), byref(h))
        return w.value, h.value

    def encode(self, text: str, clip_skip: int = 0) -> "Conditioning":
        """CLIPTextEncode, with ComfyUI's prompt weighting ("(word:1.2)").
        clip_skip: 1 reads the last layer, 2 the one before (CLIPSetLastLayer
        -2), 0 the model's default."""
        cond = Conditioning()
        _lib.kiln_text_encode(self._ptr(), text.encode(), _c_int("clip_skip", clip_skip), byref(cond._c))
        return cond

    def encode_flux(self, clip_l: str, t5xxl: str) -> "Conditioning":
        """CLIPTextEncodeFlux's texts: CLIP-L's pooled output on clip_l, T5 on
        t5xxl (its guidance is ksampler's flux_guidance). A Flux model only."""
        cond = Conditioning()
        _lib.kiln_text_encode_flux(self._ptr(), clip_l.encode(), t5xxl.encode(), byref(cond._c))
        return cond

    def encode_sd3(self, clip_l: str, clip_g: str, t5xxl: str) -> "Conditioning":
        """CLIPTextEncodeSD3's texts (empty_padding "empty_padding"): CLIP-L
        on clip_l, bigG on clip_g, T5 on t5xxl. An SD3 model only."""
        cond = Conditioning()
        _lib.kiln_text_encode_sd3(self._ptr(), clip_l.encode(), clip_g.encode(), t5xxl.encode(), byref(cond._c))
        return cond

    def encode_sdxl(self, text_g: str, text_l: str, clip_skip: int = 0) -> "Conditioning":
        """CLIPTextEncodeSDXL's texts (its numbers are ksampler's sdxl):
        OpenCLIP bigG and the pooled output on text_g, CLIP-L on text_l. An
        SDXL base model only."""
        cond = Conditioning()
        _lib.kiln_text_encode_sdxl(self._ptr(), text_g.encode(), text_l.encode(), _c_int("clip_skip", clip_skip),
                                   byref(cond._c))
        return cond

    def empty_latent(self, width: int, height: int, batch: int = 1) -> "Latent":
        """EmptyLatentImage: zeros for `batch` images of width x height pixels
        (multiples of 8)."""
        latent = Latent()
        _lib.kiln_empty_latent(self._ptr(), _c_int("width", width), _c_int("height", height),
                               _c_int("batch", batch), byref(latent._c))
        return latent

    def vae_encode(self, images, tile_size: int = 0, overlap: int = 64) -> "Latent":
        """VAEEncode: one Image or a list of Images of one size (each cropped
        to a multiple of 8 as ComfyUI does) into a latent of that batch.
        With a tile_size (64 to 4096 pixels), VAEEncodeTiled: the encoder
        over tiles overlapping by `overlap` pixels, in a tile's memory."""
        images = [images] if isinstance(images, Image) else list(images)
        # the array borrows the images' pixels; `images` keeps them alive
        c_images = (_Image * max(len(images), 1))(*(image._c for image in images))
        latent = Latent()
        if tile_size:
            _lib.kiln_vae_encode_tiled(self._ptr(), c_images, len(images), _c_int("tile_size", tile_size),
                                       _c_int("overlap", overlap), byref(latent._c))
        else:
            _lib.kiln_vae_encode(self._ptr(), c_images, len(images), byref(latent._c))
        return latent

    def vae_encode_for_inpaint(self, image: "Image", mask: Union["Image", "Mask"], grow_mask_by: int = 6) -> "Latent":
        """The picture and its mask (a Mask, or an Image whose red channel is
        white where to repaint; stretched to the picture's size) into a
        latent of batch 1 with a noise mask: VAEEncodeForInpaint with an
        inpainting model (the mask rounded and grown by grow_mask_by pixels,
        0 to 64), VAEEncode + SetLatentNoiseMask with any other."""
        latent = Latent()
        weights = mask if isinstance(mask, Mask) else Mask.from_image(mask, "red")
        _lib.kiln_vae_encode_for_inpaint_mask(self._ptr(), byref(image._c), byref(weights._c),
                                              _c_int("grow_mask_by", grow_mask_by), byref(latent._c))
        return latent

    def vae_encode_for_outpaint(self, image: "Image", left: int = 0, top: int = 0, right: int = 0, bottom: int = 0,
                                feathering: int = 40) -> "Latent":
        """ImagePadForOutpaint (the picture on a grey canvas grown by the
        pads, the mask fading over `feathering` pixels into the picture),
        then as vae_encode_for_inpaint."""
        latent = Latent()
        _lib.kiln_vae_encode_for_outpaint(self._ptr(), byref(image._c), _c_int("left", left), _c_int("top", top),
                                          _c_int("right", right), _c_int("bottom", bottom),
                                          _c_int("feathering", feathering), byref(latent._c))
        return latent

    def vae_decode(self, latent: "Latent", tile_size: int = 0, overlap: int = 64) -> list:
        """VAEDecode: the latent's batch as a list of Images. With a
        tile_size (64 to 4096 pixels; ComfyUI's default 512), VAEDecodeTiled:
        the VAE run over tiles overlapping by `overlap` pixels, in a tile's
        memory."""
        c_images = (_Image * max(latent.batch, 1))()
        if tile_size:
            _lib.kiln_vae_decode_tiled(self._ptr(), byref(latent._c), _c_int("tile_size", tile_size),
                                       _c_int("overlap", overlap), c_images, len(c_images))
        else:
            _lib.kiln_vae_decode(self._ptr(), byref(latent._c), c_images, len(c_images))
        return [Image._adopt(c_image) for c_image in c_images[:latent.batch]]

    def load_controlnet(self, path) -> "ControlNet":
        """ControlNetLoader: a ControlNet for this model's UNet (original or
        diffusers layout) or Flux transformer (InstantX's, Shakker-Labs' or
        XLabs' files), or a T2I-Adapter (TencentARC's or diffusers' files)."""
        return ControlNet(_load(_lib.kiln_controlnet_load, self, _path(path)), self)

    def load_style_model(self, path) -> "StyleModel":
        """StyleModelLoader: FLUX.1 Redux (flux1-redux-dev.safetensors) for
        this Flux model."""
        return StyleModel(_load(_lib.kiln_style_model_load, self, _path(path)), self)

    def load_ip_adapter(self, path) -> "IPAdapter":
        """IPAdapterModelLoader: an IP-Adapter (h94's plain or Plus files)
        for this model's UNet."""
        return IPAdapter(_load(_lib.kiln_ip_adapter_load, self, _path(path)), self)

    def load_hypernetwork(self, path, strength: float = 1.0) -> "Hypernetwork":
        """HypernetworkLoader: an A1111 hypernetwork (.pt) at strength
        (-10 to 10) for this model's UNet attentions, for
        ksampler(hypernetworks=...)."""
        return Hypernetwork(_load(_lib.kiln_hypernetwork_load, self, _path(path), float(strength)), self)

    def basic_scheduler(self, scheduler: str, steps: int, denoise: float = 1.0) -> list:
        """BasicScheduler: KSampler's schedule of this model's noise table
        (a list of floats for ksampler(sigmas=...))."""
        return _sigmas_from(_lib.kiln_basic_scheduler, self._ptr(), str(scheduler).encode(), _c_int("steps", steps),
                            denoise)

    def sampling_percent_to_sigma(self, percent: float, actual: bool = False) -> float:
        """SamplingPercentToSigma: the sigma at which `percent` (0 to 1) of
        this model's sampling is done; with `actual`, 0 and 1 give its
        largest and least sigma."""
        sigma = c_double()
        _lib.kiln_sampling_percent_to_sigma(self._ptr(), percent, bool(actual), byref(sigma))
        return sigma.value

    def add_noise(self, latent: "Latent", sigmas: Sequence[float], seed: int = 0, noise: bool = True) -> "Latent":
        """AddNoise: the latent with RandomNoise's noise of `seed` (none
        with noise=False, DisableNoise) added at the sigmas' sigma, as this
        model samples."""
        out = Latent()
        _lib.kiln_add_noise(self._ptr(), _c_seed(seed), not noise, byref(_c_sigmas(sigmas)), byref(latent._c),
                            byref(out._c))
        return out

    def sd_turbo_scheduler(self, steps: int, denoise: float = 1.0) -> list:
        """SDTurboScheduler: this model's sigmas at timesteps 999, 899, ...
        (SD-Turbo, SDXL-Turbo; steps 1 to 10)."""
        return _sigmas_from(_lib.kiln_sd_turbo_scheduler, self._ptr(), _c_int("steps", steps), denoise)

    def beta_sampling_scheduler(self, steps: int, alpha: float = 0.6, beta: float = 0.6) -> list:
        """BetaSamplingScheduler: the noise table at Beta(alpha, beta) quantiles."""
        return _sigmas_from(_lib.kiln_beta_sampling_scheduler, self._ptr(), _c_int("steps", steps), alpha, beta)

    def ksampler(self, positive: Union["Conditioning", Sequence[Tuple["Conditioning", float, float]]],
                 negative: Union["Conditioning", Sequence[Tuple["Conditioning", float, float]]],
                 latent: "Latent", seed: int = 0,
                 steps: int = 20, cfg: float = 7.0, sampler_name: str = "euler", scheduler: str = "normal",
                 denoise: float = 1.0,
                 control: Union["ControlApply", Sequence["ControlApply"], None] = None,
                 ip_adapter: Union["IPAdapterApply", Sequence["IPAdapterApply"], None] = None,
                 edit_latent: Optional["Latent"] = None,
                 sdxl: Optional["SdxlCond"] = None, negative_sdxl: Optional["SdxlCond"] = None,
                 start_at_step: int = 0, end_at_step: int = 0,
                 leftover_noise: bool = False, disable_noise: bool = False, progress=None,
                 flux_guidance: float = 0.0, negative_flux_guidance: float = 0.0,
                 pixart_size: Optional[Tuple[int, int]] = None, negative_pixart_size: Optional[Tuple[int, int]] = None,
                 differential_diffusion: float = 0.0, rescale_cfg: float = 0.0, cfg_zero_star: bool = False,
                 apg: Optional["APG"] = None, tcfg: bool = False, mahiro: bool = False, cfg_norm: float = 0.0,
                 epsilon_scaling: float = 0.0, freeu: Optional["FreeU"] = None, pag_scale: float = 0.0,
                 sag: Optional["SAG"] = None, deep_shrink: Optional["DeepShrink"] = None,
                 hypertile: Optional["HyperTile"] = None,
                 hypernetworks: Union["Hypernetwork", Sequence["Hypernetwork"], None] = None,
                 cfg_operation: Optional["LatentOperation"] = None,
                 step_cache: Optional["StepCache"] = None, fresca: Optional["FreSca"] = None,
                 dual_cfg: Optional["DualCFG"] = None, perp_neg: Optional["PerpNeg"] = None,
                 reference: Union["Latent", Sequence["Latent"], None] = None,
                 negative_reference: Union["Latent", Sequence["Latent"], None] = None,
                 reference_method: str = "offset", negative_reference_method: str = "offset",
                 skip_layer_guidance: Optional["SkipLayerGuidance"] = None,
                 sigmas: Optional[Sequence[float]] = None, eta: float = 1.0, s_noise: float = 1.0,
                 lms_order: int = 0, solver_type: Optional[str] = None, max_stage: int = 0, r: float = 0.0,
                 sa_solver: Optional["SASolver"] = None, dpm_adaptive: Optional["DPMAdaptive"] = None,
                 euler_cfg_pp_alternative: bool = False, denoised_output: bool = False) -> Union["Latent", Tuple["Latent", "Latent"]]:
        """KSampler: a new latent of latent's size (without a noise mask),
        guided by the two prompts. Either prompt may be given in parts over
        the sampling, a sequence of (Conditioning, start_percent,
        end_percent) (ConditioningSetTimestepRange's, ConditioningCombine
        of them; at most 8): each step uses the parts that hold it, their
        predictions averaged; a part may add ConditioningSetMask's mask (an
        Image, its red channel) and strength, (Conditioning, start, end,
        mask, strength), weighting it at each pixel, and last an Area
        (ConditioningSetArea and its kin: the part sampled on a box of the
        latent).

        The noise is ComfyUI's for `seed` (0 to 2**64 - 1); sampler_name and
        scheduler are ComfyUI's names ("euler", "dpmpp_2m", ...; "normal",
        "karras", ...); denoise below 1 keeps that much of latent's picture
        (img2img). A latent with a noise mask repaints only what it masks.

        control: a ControlApply (ControlNetApplyAdvanced on both prompts),
        or a sequence of them (such nodes chained, in that order; at most
        8);
        ip_adapter: an IPAdapterApply (IPAdapterAdvanced on the positive
        prompt), or a sequence of them (such nodes chained; at most 8);
        edit_latent: for InstructPix2Pix models (and only those),
        vae_encode of the picture to edit, sampled from an empty latent
        (InstructPixToPixConditioning); sdxl: an SdxlCond (SDXL models:
        CLIPTextEncodeSDXL's numbers; None: CLIPTextEncode's);
        negative_sdxl: the negative prompt's sizes, crop and target where
        they are its own (None: sdxl's).

        KSamplerAdvanced: only the schedule's steps from start_at_step to
        end_at_step run (0: to the end); a run cut short keeps its leftover
        noise if asked (for a second pass, e.g. SDXL's refiner), else ends
        at sigma 0; with disable_noise the latent goes in as it is.

        flux_guidance, negative_flux_guidance: Flux dev's and Chroma's
        FluxGuidance on the positive and on the negative prompt (0: dev's
        default 3.5, Chroma's 0; below 0: none, FluxDisableGuidance).
        pixart_size, negative_pixart_size: CLIPTextEncodePixArtAlpha's
        (width, height) on either prompt, the picture size PixArt-alpha's
        1024 model embeds for it (None: the picture's own).
        differential_diffusion: DifferentialDiffusion's strength on a latent
        with a noise mask (0: none, 1: the node's).
        rescale_cfg: RescaleCFG's multiplier on the model (0 to 1; 0: none;
        the node's default is 0.7). cfg_zero_star: CFGZeroStar on the model.
        apg: an APG, Adaptive Projected Guidance on the model (None: none).
        tcfg, mahiro: TCFG and Mahiro on the model. cfg_norm: CFGNorm's
        strength (0: none; the node's default is 1). epsilon_scaling: Epsilon
        Scaling's factor (0: none; 0.5 to 1.5, the node's default 1.005). The
        patches act in kiln's order: TCFG, APG, the guidance (RescaleCFG's),
        CFGZeroStar, Mahiro, CFGNorm, Epsilon Scaling.
        freeu: a FreeU (FreeU or, with v2, FreeU_V2 on an SD UNet; None:
        none). pag_scale: PerturbedAttentionGuidance's scale on an SD UNet
        (0 to 100; 0: none; the node's default is 3). sag: a SAG,
        SelfAttentionGuidance on an SD UNet (None: none). deep_shrink: a
        DeepShrink, PatchModelAddDownscale on an SD UNet (None: none).
        hypertile: a HyperTile, the node on an SD UNet (None: none).
        hypernetworks: a Hypernetwork or a sequence of them on an SD UNet,
        each applied to what the one before gave (None: none). cfg_operation: a
        LatentOperation, LatentApplyOperationCFG on the model (None: none).
        step_cache: an EasyCache or LazyCache on the model (None: none);
        the steps it skipped are the returned latent's steps_skipped.
        fresca: a FreSca on the model (None: none), before the other
        guidance patches.
        dual_cfg, perp_neg: SamplerCustomAdvanced's DualCFGGuider (a
        DualCFG: its cond2 and cfg_cond2_negative; positive is its cond1,
        cfg its cfg_conds) and PerpNegGuider (a PerpNeg: its empty prompt
        and neg_scale); None: the plain guidance.
        reference, negative_reference: ReferenceLatent on the positive and
        the negative prompt (FLUX.1 Kontext): vae_encode's latents of
        pictures (one each), or a sequence of them (at most 8);
        reference_method, negative_reference_method: where each prompt's go
        among the image positions (FluxKontextMultiReferenceLatentMethod:
        "offset", "index" or "uxo/uno").
        skip_layer_guidance: a SkipLayerGuidance (SD3 and Flux models).
        sigmas: SamplerCustom's SIGMAS (a scheduler function's list, cut or
        turned by split_sigmas and the like): the sampling walks them, and
        steps, scheduler, denoise and the KSamplerAdvanced steps are not
        used (an empty list gives the latent back).
        eta, s_noise: the custom sampler nodes' (SamplerEulerAncestral,
        SamplerDPMPP_2M_SDE, ...): how much noise an ancestral or SDE
        sampler adds back (0: none) and its scale; KSampler's are 1 and 1.
        lms_order: SamplerLMS's order, 1 to 4 (0: 4).
        solver_type: er_sde's (SamplerER_SDE: "ER-SDE", "Reverse-time SDE"
        or "ODE") or seeds_2's (SamplerSEEDS2: "phi_1" or "phi_2"); None:
        the first. max_stage: er_sde's order, 1 to 3 (0: 3). r: seeds_2's
        intermediate stage, a fraction of the step (0: 0.5).
        sa_solver: a SASolver, SamplerSASolver's settings (None: KSampler's).
        dpm_adaptive: a DPMAdaptive, SamplerDPMAdaptative's settings (None:
        KSampler's, at eta 0; with them, eta and s_noise apply).
        euler_cfg_pp_alternative: with sampler_name "euler_cfg_pp",
        SamplerEulerCFGpp's "alternative" version.
        denoised_output: also return SamplerCustom's denoised_output, the
        model's x0 prediction at the last step: (latent, denoised).

        progress(step, total) is called once a step (0 <= step < total).
        Returning False stops the sampling: KilnError is raised with status
        KILN_ERR_CANCELLED. If it raises, the sampling stops and that
        exception is raised here."""
        params = _KSamplerParams(seed=_c_seed(seed), steps=_c_int("steps", steps), cfg=cfg,
                                 sampler_name=sampler_name.encode(), scheduler=scheduler.encode(), denoise=denoise)
        # the struct keeps what these pointers point to alive through the call
        pictures = {}  # the Masks' pictures, alive through the call
        controls = [control] if isinstance(control, ControlApply) else list(control or [])
        if controls:
            params.control = (_ControlApply * len(controls))(*(
                _ControlApply(c.controlnet._ptr(), ctypes.pointer(c.image._c), c.strength, c.start_percent,
                              c.end_percent, None if c.union_type is None else str(c.union_type).encode(),
                              None if c.mask is None else ctypes.pointer(pictures.setdefault(id(c), _mask_picture(
                                  c.mask))._c), bool(c.positive_only))
                for c in controls))
            params.control_count = len(controls)
        adapters = [ip_adapter] if isinstance(ip_adapter, IPAdapterApply) else list(ip_adapter or [])
        if adapters:
            pictures = [[a.image] if isinstance(a.image, Image) else list(a.image) for a in adapters]
            params.ip_adapter = (_IPAdapterApply * len(adapters))(*(
                _IPAdapterApply(a.adapter._ptr(), a.clip_vision._ptr(), (_Image * len(p))(*(x._c for x in p)),
                                a.weight, a.start_percent, a.end_percent, len(p)) for a, p in zip(adapters, pictures)))
            params.ip_adapter_count = len(adapters)
        if edit_latent is not None:
            params.edit_latent = ctypes.pointer(edit_latent._c)
        if sdxl is not None:
            params.sdxl = ctypes.pointer(_SdxlCond(*sdxl))
        if negative_sdxl is not None:
            params.negative_sdxl = ctypes.pointer(_SdxlCond(*negative_sdxl))
        params.start_at_step = _c_int("start_at_step", start_at_step)
        params.end_at_step = _c_int("end_at_step", end_at_step)
        params.leftover_noise = bool(leftover_noise)
        params.disable_noise = bool(disable_noise)
        params.flux_guidance = flux_guidance
        params.negative_flux_guidance = negative_flux_guidance
        if pixart_size is not None:
            params.pixart_width, params.pixart_height = pixart_size
        if negative_pixart_size is not None:
            params.negative_pixart_width, params.negative_pixart_height = negative_pixart_size
        params.differential_diffusion = differential_diffusion
        params.rescale_cfg = rescale_cfg
        params.cfg_zero_star = bool(cfg_zero_star)
        if apg is not None:
            a = APG(*apg)
            params.apg, params.apg_eta, params.apg_norm_threshold, params.apg_momentum = \
                True, a.eta, a.norm_threshold, a.momentum
        params.tcfg, params.mahiro = bool(tcfg), bool(mahiro)
        params.cfg_norm, params.epsilon_scaling = cfg_norm, epsilon_scaling
        if freeu is not None:
            params.freeu = ctypes.pointer(_FreeU(*FreeU(*freeu)))
        params.pag_scale = pag_scale
        if sag is not None:
            params.sag = ctypes.pointer(_SAG(*SAG(*sag)))
        if deep_shrink is not None:
            ds = DeepShrink(*deep_shrink)
            params.deep_shrink = ctypes.pointer(_DeepShrink(ds.block_number, ds.downscale_factor, ds.start_percent,
                                                            ds.end_percent, ds.downscale_after_skip,
                                                            ds.downscale_method.encode(), ds.upscale_method.encode()))
        if hypertile is not None:
            params.hypertile = ctypes.pointer(_HyperTile(*HyperTile(*hypertile)))
        if hypernetworks is not None:
            chain = [hypernetworks] if isinstance(hypernetworks, Hypernetwork) else list(hypernetworks)
            params.hypernetworks = (c_void_p * len(chain))(*(h._ptr() for h in chain))
            params.hypernetwork_count = len(chain)
        if fresca is not None:
            params.fresca = ctypes.pointer(_FreSca(*FreSca(*fresca)))
        skipped = c_int(0)
        if step_cache is not None:
            params.step_cache = ctypes.pointer(_StepCache(step_cache._kind, step_cache.reuse_threshold,
                                                          step_cache.start_percent, step_cache.end_percent))
            params.steps_skipped = ctypes.pointer(skipped)
        if cfg_operation is not None:
            params.cfg_operation = ctypes.pointer(LatentOperation(*cfg_operation)._c())
        if dual_cfg is not None:
            d = DualCFG(*dual_cfg)
            params.dual_cfg_cond2, params.cfg_cond2_negative, params.dual_cfg_nested = \
                ctypes.pointer(d.cond2._c), d.cfg_cond2_negative, d.style == "nested"
            if d.style not in ("regular", "nested"):
                raise ValueError(f"DualCFG style {d.style!r}: 'regular' or 'nested'")
        if perp_neg is not None:
            pn = PerpNeg(*perp_neg)
            params.perp_neg_empty, params.perp_neg_scale = ctypes.pointer(pn.empty._c), pn.neg_scale
        for field, given in (("reference", reference), ("negative_reference", negative_reference)):
            latents = [given] if isinstance(given, Latent) else list(given or [])
            if latents:
                setattr(params, field, (_Latent * len(latents))(*(x._c for x in latents)))
                setattr(params, field + "_count", len(latents))
        for field, name in (("reference_method", reference_method),
                            ("negative_reference_method", negative_reference_method)):
            method = c_int()
            _lib.kiln_reference_method_from_name(str(name).encode(), byref(method))
            setattr(params, field, method.value)
        if skip_layer_guidance is not None:
            g = SkipLayerGuidance(*skip_layer_guidance)
            doubles, singles = list(g.double_layers), list(g.single_layers)
            params.skip_layer_guidance = ctypes.pointer(_SkipLayerGuidance(
                (c_int * max(len(doubles), 1))(*doubles), len(doubles), (c_int * max(len(singles), 1))(*singles),
                len(singles), g.scale, g.start_percent, g.end_percent, g.rescaling_scale, g.uncond_only))
        if sigmas is not None:
            params.sigmas = ctypes.pointer(_c_sigmas(sigmas))
        if (eta, s_noise, lms_order, solver_type, max_stage, r, sa_solver, dpm_adaptive, euler_cfg_pp_alternative) != \
                (1.0, 1.0, 0, None, 0, 0.0, None, None, False):
            options = _SamplerOptions(eta, s_noise, _c_int("lms_order", lms_order),
                                      None if solver_type is None else solver_type.encode(),
                                      _c_int("max_stage", max_stage), r)
            options.euler_cfg_pp_alternative = bool(euler_cfg_pp_alternative)
            if sa_solver is not None:
                s = SASolver(*sa_solver)
                options.sa_solver_custom = True
                options.sde_start_percent, options.sde_end_percent = s.sde_start_percent, s.sde_end_percent
                options.predictor_order = _c_int("predictor_order", s.predictor_order)
                options.corrector_order = _c_int("corrector_order", s.corrector_order)
                options.simple_order_2 = bool(s.simple_order_2)
            if dpm_adaptive is not None:
                a = DPMAdaptive(*dpm_adaptive)
                options.dpm_adaptive_custom = True
                options.order = _c_int("order", a.order)
                options.rtol, options.atol, options.h_init = a.rtol, a.atol, a.h_init
                options.pcoeff, options.icoeff, options.dcoeff = a.pcoeff, a.icoeff, a.dcoeff
                options.accept_safety = a.accept_safety
            params.sampler_options = ctypes.pointer(options)
        callback = _Progress(progress) if progress is not None else None
        if callback is not None:
            params.progress = callback.c_function
        prompts, masks = [], []
        for side, given in (("positive", positive), ("negative", negative)):
            if isinstance(given, Conditioning):
                prompts.append(byref(given._c))
                continue
            parts = []
            for part in given:  # (Conditioning, start, end[, mask (Mask or Image), strength][, Area])
                area = part[-1] if isinstance(part[-1], Area) else None
                if area is not None:
                    part = part[:-1]
                c_part = _ConditioningPart(ctypes.pointer(part[0]._c), float(part[1]), float(part[2]))
                if area is not None:
                    area._fill(c_part)
                if len(part) > 3:
                    weights, c_part.mask_w, c_part.mask_h = _mask_weights(part[3])
                    masks.append(weights)  # kept alive through the call
                    c_part.mask = weights
                    c_part.strength = float(part[4]) if len(part) > 4 else 1.0
                parts.append(c_part)
            setattr(params, side + "_parts", (_ConditioningPart * max(len(parts), 1))(*parts))
            setattr(params, side + "_part_count", len(parts))
            prompts.append(None)
        out = Latent()
        denoised = Latent() if denoised_output else None
        if denoised is not None:
            params.denoised_output = ctypes.pointer(denoised._c)
        try:
            _lib.kiln_ksampler(self._ptr(), byref(params), prompts[0], prompts[1], byref(latent._c), byref(out._c))
        except KilnError:
            if callback is not None and callback.exception is not None:
                raise callback.exception from None
            raise
        out.steps_skipped = skipped.value
        return out if denoised is None else (out, denoised)

    def __repr__(self) -> str:
        return "<kiln.Model closed>" if self.closed else f"<kiln.Model {self.family}>"


class _Progress:
    """The C progress callback over a Python progress(step, total); it keeps
    an exception the Python one raised, for ksampler to raise again."""

    def __init__(self, progress):
        self.progress = progress
        self.exception = None
        self.c_function = _ProgressFn(self._call)

    def _call(self, ctx, step, total, denoised):
        try:
            if self.progress(step, total) is False:
                return _KILN_ERR_CANCELLED
        except BaseException as e:  # KeyboardInterrupt too: it must not vanish inside the C call
            self.exception = e
            return _KILN_ERR_CANCELLED
        return _KILN_OK


class ControlNet(_Handle):
    """A ControlNet loaded for a model (ControlNetLoader); made by
    Model.load_controlnet."""

    _free = _lib.kiln_controlnet_free


class IPAdapter(_Handle):
    """An IP-Adapter loaded for a model (IPAdapterModelLoader); made by
    Model.load_ip_adapter."""

    _free = _lib.kiln_ip_adapter_free


class Hypernetwork(_Handle):
    """An A1111 hypernetwork loaded for a model at a strength
    (HypernetworkLoader); made by Model.load_hypernetwork."""

    _free = _lib.kiln_hypernetwork_free


class StyleModel(_Handle):
    """FLUX.1 Redux loaded for a Flux model (StyleModelLoader); made by
    Model.load_style_model."""

    _free = _lib.kiln_style_model_free

    def apply(self, conditioning: "Conditioning", clip_vision: "ClipVision", image: "Image", strength: float = 1.0,
              crop: str = "center") -> "Conditioning":
        """CLIPVisionEncode of image with the SigLIP tower (crop "center" or
        "none"), then StyleModelApply (strength_type "multiply"): a new
        conditioning, conditioning's rows and then the Redux tokens times
        strength."""
        if crop not in ("center", "none"):
            raise ValueError(f"crop {crop!r}: 'center' or 'none'")
        out = Conditioning()
        _lib.kiln_style_model_apply(self._ptr(), clip_vision._ptr(), byref(image._c), crop == "center", strength,
                                    byref(conditioning._c), byref(out._c))
        return out


class ClipVision(_Handle):
    """A CLIP image encoder on a backend (CLIPVisionLoader); made by
    load_clip_vision."""

    _free = _lib.kiln_clip_vision_free


class Upscaler(_Handle):
    """An ESRGAN upscale model on a backend (UpscaleModelLoader); made by
    load_upscale_model."""

    _free = _lib.kiln_upscaler_free

    def upscale(self, image: "Image") -> "Image":
        """ImageUpscaleWithModel: the image, upscaled by the model's factor
        (in overlapping tiles of 512 pixels, as ComfyUI runs it)."""
        out = Image()
        _lib.kiln_image_upscale_with_model(self._ptr(), byref(image._c), byref(out._c))
        return out


class SdxlCond(NamedTuple):
    """CLIPTextEncodeSDXL's numbers (and CLIPTextEncodeSDXLRefiner's
    aesthetic scores) for SDXL's vector y, the same on both prompts; sizes
    0 are ComfyUI's default, 8 x the latent's."""
    width: int = 0
    height: int = 0
    crop_w: int = 0
    crop_h: int = 0
    target_width: int = 0
    target_height: int = 0
    aesthetic: float = 6.0
    negative_aesthetic: float = 2.5


class ControlApply(NamedTuple):
    """ControlNetApplyAdvanced's inputs: the ControlNet, the hint Image (an
    edge map, a pose ...; fitted to the latent as ComfyUI does), its
    strength and the part of the sampling it acts on; for a union
    ControlNet (Flux's InstantX/Shakker-Labs Union) SetUnionControlNetType's
    type: one of its names ("openpose", "depth", ..., "repaint"), the
    number the model uses, or None ("auto"); for a Flux inpainting
    ControlNet (Alimama's) ControlNetInpaintingAliMamaApply's mask: a Mask,
    or an Image whose red channel is white where to repaint (stretched to the
    picture).
    positive_only: the older ControlNetApply, on the positive prompt only
    (the negative one sampled without it)."""
    controlnet: ControlNet
    image: "Image"
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    union_type: Union[str, int, None] = None
    mask: Union["Image", "Mask", None] = None
    positive_only: bool = False


class Area(NamedTuple):
    """Where a prompt part is sampled, the last item of a ksampler part:
    ConditioningSetArea's box in its pixels (8 to a latent pixel, floored,
    as ComfyUI counts them whatever the VAE), or
    with percentage ConditioningSetAreaPercentage's in fractions of the
    picture (0 to 1); width 0: no box, the strength alone
    (ConditioningSetAreaStrength). strength weighs the part (0 to 10; 0
    adds nothing, so leave such a part out). mask_bounds: the box is the
    part's mask's bounds (ConditioningSetMask's "mask bounds")."""
    x: float = 0
    y: float = 0
    width: float = 0
    height: float = 0
    strength: float = 1.0
    percentage: bool = False
    mask_bounds: bool = False

    def _fill(self, c_part):
        if self.percentage:
            if not (self.width > 0 and self.height > 0):
                raise ValueError(f"Area {self.width} x {self.height} of the picture: fractions above 0")
            c_part.fraction_x, c_part.fraction_y = float(self.x), float(self.y)
            c_part.fraction_w, c_part.fraction_h = float(self.width), float(self.height)
        elif self.width:
            box = [_c_int(name, value) // 8 for name, value in
                   (("x", self.x), ("y", self.y), ("width", self.width), ("height", self.height))]
            c_part.area_x, c_part.area_y, c_part.area_w, c_part.area_h = box
        c_part.mask_bounds = bool(self.mask_bounds)
        if not 0.0 < float(self.strength) <= 10.0:
            raise ValueError(f"Area strength {self.strength}: above 0 and at most 10 (a part at 0 adds nothing)")
        c_part.area_strength = float(self.strength)


class APG(NamedTuple):
    """The APG node's settings (Adaptive Projected Guidance): the scale of
    the guidance's part along the positive prediction (1: plain CFG's),
    the norm the guidance is cut to (0: not), and its running average's
    momentum (0: none)."""
    eta: float = 1.0
    norm_threshold: float = 5.0
    momentum: float = 0.0


class FreeU(NamedTuple):
    """The FreeU node's settings (v2: FreeU_V2's, whose defaults are 1.3,
    1.4, 0.9, 0.2): in the UNet's decoder blocks of 4 and 2 times its base
    width, half the channels scaled by b1 and b2 (v2: by the pixels' mean as
    well) and the skips' lowest frequencies by s1 and s2."""
    b1: float = 1.1
    b2: float = 1.2
    s1: float = 0.9
    s2: float = 0.2
    v2: bool = False


class LatentOperation(NamedTuple):
    """LatentOperationTonemapReinhard (kind "tonemap_reinhard", multiplier)
    or LatentOperationSharpen (kind "sharpen", sharpen_radius, sigma,
    alpha), for Latent.apply_operation and ksampler(cfg_operation=...)."""
    kind: str = "tonemap_reinhard"
    multiplier: float = 1.0
    sharpen_radius: int = 9
    sigma: float = 1.0
    alpha: float = 0.1

    def _c(self) -> "_LatentOperation":
        kinds = {"tonemap_reinhard": 0, "sharpen": 1}
        if self.kind not in kinds:
            raise ValueError(f"latent operation {self.kind!r}: tonemap_reinhard or sharpen")
        return _LatentOperation(kinds[self.kind], self.multiplier, self.sharpen_radius, self.sigma, self.alpha)


class SAG(NamedTuple):
    """The SelfAttentionGuidance node's settings: scale (-2 to 5, not 0)
    times the difference of the negative prompt's prediction blurred where
    the UNet's middle block attends most (std blur_sigma) and that blur
    denoised again."""
    scale: float = 0.5
    blur_sigma: float = 2.0


class DeepShrink(NamedTuple):
    """PatchModelAddDownscale ("Kohya Deep Shrink"): while the schedule is
    between start_percent and end_percent, the UNet's activations after
    input block block_number shrunk by downscale_factor (after that block's
    skip is kept, or before), and grown back to each skip's size in the
    decoder; methods "bicubic", "bilinear", "nearest-exact", "area", "bislerp"."""
    block_number: int = 3
    downscale_factor: float = 2.0
    start_percent: float = 0.0
    end_percent: float = 0.35
    downscale_after_skip: bool = True
    downscale_method: str = "bicubic"
    upscale_method: str = "bicubic"


class HyperTile(NamedTuple):
    """The HyperTile node's settings: the UNet's self-attention in tiles of
    at least tile_size pixels (1 to 2048; less than 32 counts as 32) on its
    first max_depth + 1 levels (0 to 10), the least side doubled each level
    down with scale_depth; swap_size above 2 (1 to 128) draws the tile
    counts per block and step from the seed's generator, as ComfyUI does."""
    tile_size: int = 256
    swap_size: int = 2
    max_depth: int = 0
    scale_depth: bool = False


class FreSca(NamedTuple):
    """The FreSca node's settings: the guidance direction's frequencies
    within freq_cutoff (1 to 10000) of zero scaled by scale_low, the others
    by scale_high (0 to 10 each)."""
    scale_low: float = 1.0
    scale_high: float = 1.25
    freq_cutoff: int = 20


class EasyCache(NamedTuple):
    """The EasyCache node's settings: a step whose model output is predicted
    to change little (the summed change since the last step run below
    reuse_threshold, 0 to 3) reuses the last step's change instead of
    running the diffusion model, from start_percent to end_percent of the
    sampling."""
    reuse_threshold: float = 0.2
    start_percent: float = 0.15
    end_percent: float = 0.95
    _kind = 1


class LazyCache(NamedTuple):
    """The LazyCache node's: EasyCache's rule on the whole guided step."""
    reuse_threshold: float = 0.2
    start_percent: float = 0.15
    end_percent: float = 0.95
    _kind = 2


StepCache = Union[EasyCache, LazyCache]


class DualCFG(NamedTuple):
    """DualCFGGuider's third prompt and second scale: cond2 (between the
    positive prompt, its cond1, and the negative), cfg_cond2_negative, and
    its style ("regular": cond2 guided from the negative plus the positive
    guided from cond2; "nested": the positive guided from cond2, that
    guided from the negative)."""
    cond2: "Conditioning"
    cfg_cond2_negative: float = 8.0
    style: str = "regular"


class PerpNeg(NamedTuple):
    """PerpNegGuider's empty prompt and neg_scale: the negative prompt's
    guidance kept only across the positive's, from the empty prompt."""
    empty: "Conditioning"
    neg_scale: float = 1.0


class DPMAdaptive(NamedTuple):
    """SamplerDPMAdaptative's settings for the sampler "dpm_adaptive": its
    order (2 or 3), the error's tolerances, the first step in -log sigma,
    the step size controller's PID coefficients and the factor at which a
    step is taken. (Its eta and s_noise are ksampler's; give eta=0.0 for
    the node's default.)"""
    order: int = 3
    rtol: float = 0.05
    atol: float = 0.0078
    h_init: float = 0.05
    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    accept_safety: float = 0.81


class SASolver(NamedTuple):
    """SamplerSASolver's settings: the part of the sampling its noise acts
    on, its predictor's order (1 to 6) and corrector's (0 to 6), and
    simple_order_2. (Its eta is ksampler's eta; use_pece is the sampler
    "sa_solver_pece".)"""
    sde_start_percent: float = 0.2
    sde_end_percent: float = 0.8
    predictor_order: int = 3
    corrector_order: int = 4
    simple_order_2: bool = False


class IPAdapterApply(NamedTuple):
    """IPAdapterAdvanced's inputs (weight type linear, no negative picture):
    the IP-Adapter, its CLIP vision model, the picture to follow (or a
    sequence of them, an ImageBatch: their tokens side by side, as
    combine_embeds "concat"), its weight and the part of the sampling it
    acts on."""
    adapter: IPAdapter
    clip_vision: ClipVision
    image: Union["Image", Sequence["Image"]]
    weight: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0


# ---- values: conditioning, latent, image ----------------------------------

class _Owned:
    """A C struct whose memory the library allocated; the matching _free
    releases it on garbage collection (every one of them is safe on a zeroed
    struct, which is what a failed call leaves)."""

    _struct = None
    _free = None

    def __init__(self):
        self._c = self._struct()

    def __del__(self, _byref=byref):  # byref bound here: module globals may be gone at exit
        if getattr(self, "_c", None) is not None:
            type(self)._free(_byref(self._c))


def _struct_field(name: str) -> property:
    """A read-only property of the C struct's field `name`."""
    return property(lambda self: getattr(self._c, name))


class Conditioning(_Owned):
    """CONDITIONING: an encoded prompt, (tokens, dim) floats (SDXL: with a
    pooled output of pooled_dim floats). Made by Model.encode*."""

    _struct = _Conditioning
    _free = _lib.kiln_conditioning_free

    tokens = _struct_field("tokens")
    dim = _struct_field("dim")
    pooled_dim = _struct_field("pooled_dim")

    def to_list(self) -> list:
        """The rows as one flat list of floats, token by token."""
        return self._c.data[:self.tokens * self.dim]

    def zero_out(self) -> "Conditioning":
        """ConditioningZeroOut: a conditioning of this one's shape, its rows
        and pooled output zeros."""
        out = Conditioning()
        _lib.kiln_conditioning_zero_out(byref(self._c), byref(out._c))
        return out


class Latent(_Owned):
    """LATENT: an unscaled VAE latent of (batch, channels, height, width)
    floats, as ComfyUI's LATENT["samples"], maybe with a noise mask
    (LATENT["noise_mask"], 1 repaints). Made by Model.empty_latent,
    Model.vae_encode*, Model.ksampler and Latent.repeat."""

    _struct = _Latent
    _free = _lib.kiln_latent_free

    batch = _struct_field("batch")
    channels = _struct_field("channels")
    height = _struct_field("height")
    width = _struct_field("width")

    @property
    def shape(self) -> tuple:
        """(batch, channels, height, width)."""
        return self.batch, self.channels, self.height, self.width

    @property
    def mask_shape(self) -> Optional[tuple]:
        """(height, width) of the noise mask, or None without one."""
        return (self._c.mask_h, self._c.mask_w) if self._c.noise_mask else None

    def to_list(self) -> list:
        """The values as one flat list of floats, row-major over shape."""
        batch, channels, height, width = self.shape
        return self._c.data[:batch * channels * height * width]

    def noise_mask_to_list(self) -> Optional[list]:
        """The noise mask as one flat list of floats, row-major over
        mask_shape, or None without one."""
        return self._c.noise_mask[:self._c.mask_h * self._c.mask_w] if self._c.noise_mask else None

    def to_numpy(self):
        """A copy of the values as a numpy float32 array of this shape
        (needs numpy)."""
        import numpy
        return numpy.array(self.to_list(), dtype=numpy.float32).reshape(self.shape)

    def repeat(self, amount: int) -> "Latent":
        """RepeatLatentBatch: this latent's images (and noise mask) `amount`
        times over."""
        out = Latent()
        _lib.kiln_latent_repeat(byref(self._c), _c_int("amount", amount), byref(out._c))
        return out

    def composite(self, source: "Latent", x: int, y: int, feather: int = 0) -> "Latent":
        """LatentComposite: source put onto this latent at (x, y), with
        feather its edges fading in; all three in the node's pixels (8 to a
        latent pixel, floored)."""
        out = Latent()
        _lib.kiln_latent_composite(byref(self._c), byref(source._c), _c_int("x", x) // 8, _c_int("y", y) // 8,
                                   _c_int("feather", feather) // 8, byref(out._c))
        return out

    def composite_masked(self, source: "Latent", x: int, y: int, resize_source: bool = False,
                         mask: Union["Image", "Mask", None] = None) -> "Latent":
        """LatentCompositeMasked: source put onto this latent at (x, y) (the
        node's pixels, 8 to a latent pixel), weighted by mask (a Mask, or an
        Image's red channel; None: everywhere), resized to this latent first
        with resize_source."""
        out = Latent()
        weights, w, h = _mask_weights(mask) if mask is not None else (None, 0, 0)
        _lib.kiln_latent_composite_masked(byref(self._c), byref(source._c), _c_int("x", x) // 8, _c_int("y", y) // 8,
                                          bool(resize_source), weights, w, h, byref(out._c))
        return out

    def blend(self, other: "Latent", blend_factor: float = 0.5) -> "Latent":
        """LatentBlend: this * blend_factor + other * (1 - blend_factor)."""
        out = Latent()
        _lib.kiln_latent_blend(byref(self._c), byref(other._c), float(blend_factor), byref(out._c))
        return out

    def _combine(self, other: "Latent", op: str, ratio: float = 0.0) -> "Latent":
        out = Latent()
        _lib.kiln_latent_combine(byref(self._c), byref(other._c), op.encode(), float(ratio), byref(out._c))
        return out

    def add(self, other: "Latent") -> "Latent":
        """LatentAdd (other resized and repeated to this latent's shape)."""
        return self._combine(other, "add")

    def subtract(self, other: "Latent") -> "Latent":
        """LatentSubtract."""
        return self._combine(other, "subtract")

    def interpolate(self, other: "Latent", ratio: float) -> "Latent":
        """LatentInterpolate: each pixel's channel vectors mixed by ratio
        in direction and length."""
        return self._combine(other, "interpolate", ratio)

    def apply_operation(self, operation: "LatentOperation") -> "Latent":
        """LatentApplyOperation: the operation on each image."""
        out = Latent()
        op = LatentOperation(*operation)._c()
        _lib.kiln_latent_apply_operation(byref(self._c), byref(op), byref(out._c))
        return out

    def multiply(self, multiplier: float) -> "Latent":
        """LatentMultiply."""
        out = Latent()
        _lib.kiln_latent_multiply(byref(self._c), float(multiplier), byref(out._c))
        return out

    def batch_with(self, other: "Latent") -> "Latent":
        """LatentBatch: this latent's images, then other's."""
        out = Latent()
        _lib.kiln_latent_batch(byref(self._c), byref(other._c), byref(out._c))
        return out

    def concat(self, other: "Latent", dim: str = "x") -> "Latent":
        """LatentConcat: other joined after this latent along dim ("x", "y",
        "t": the channels), before it for "-x", "-y", "-t"."""
        out = Latent()
        _lib.kiln_latent_concat(byref(self._c), byref(other._c), dim.encode(), byref(out._c))
        return out

    def cut(self, dim: str, index: int, amount: int) -> "Latent":
        """LatentCut: amount rows of dim ("x", "y", "t") from index (below 0: from the end)."""
        out = Latent()
        _lib.kiln_latent_cut(byref(self._c), dim.encode(), _c_int("index", index), _c_int("amount", amount),
                             byref(out._c))
        return out

    def save(self, path, prompt: Optional[str] = None) -> None:
        """SaveLatent: ComfyUI's .latent file (its noise mask not kept);
        prompt, the workflow's JSON, goes into its metadata."""
        _lib.kiln_latent_save(byref(self._c), _path(path), prompt.encode() if prompt is not None else None)

    @classmethod
    def load(cls, path) -> "Latent":
        """LoadLatent: a ComfyUI .latent file (an old one without its format
        version scaled back by 1 / 0.18215)."""
        latent = cls()
        _lib.kiln_latent_load(_path(path), byref(latent._c))
        return latent

    def seed_behavior(self, behavior: str = "fixed") -> "Latent":
        """LatentBatchSeedBehavior: "fixed" (every image the first one's
        noise) or "random" (each its own)."""
        out = Latent()
        _lib.kiln_latent_batch_seed_behavior(byref(self._c), behavior.encode(), byref(out._c))
        return out

    def crop(self, x: int, y: int, width: int, height: int) -> "Latent":
        """LatentCrop, in the node's pixels (8 to a latent pixel, floored)."""
        out = Latent()
        box = [_c_int(name, value) // 8 for name, value in (("x", x), ("y", y), ("width", width), ("height", height))]
        _lib.kiln_latent_crop(byref(self._c), *box, byref(out._c))
        return out

    def flip(self, vertically: bool) -> "Latent":
        """LatentFlip: vertically ("x-axis") or horizontally ("y-axis")."""
        return _flip_rotate(self, _lib.kiln_latent_flip_rotate, vertically=bool(vertically))

    def rotate(self, degrees: int) -> "Latent":
        """LatentRotate: 0, 90, 180 or 270 degrees clockwise."""
        return _flip_rotate(self, _lib.kiln_latent_flip_rotate, degrees=degrees)

    def from_batch(self, batch_index: int, length: int = 1) -> "Latent":
        """LatentFromBatch: `length` images from image `batch_index` on,
        sampled by ksampler with the noise they had in this batch."""
        out = Latent()
        _lib.kiln_latent_from_batch(byref(self._c), _c_int("batch_index", batch_index), _c_int("length", length),
                                    byref(out._c))
        return out

    @property
    def batch_index(self) -> Optional[List[int]]:
        """LatentFromBatch's places of the images in the batch their noise
        comes from; None: their own."""
        if not self._c.batch_index:
            return None
        return [self._c.batch_index[i] for i in range(self._c.batch)]

    def upscale_by(self, scale: float, method: str = "nearest-exact") -> "Latent":
        """LatentUpscaleBy: each side times `scale` (rounded as Python
        rounds), resized by "nearest-exact", "bilinear", "bicubic", "area" or
        "bislerp"; the
        noise mask stays behind."""
        out = Latent()
        _lib.kiln_latent_upscale_by(byref(self._c), method.encode(), scale, byref(out._c))
        return out

    def upscale(self, width: int, height: int, method: str = "nearest-exact", crop: bool = False) -> "Latent":
        """LatentUpscale: to width x height pixels as ComfyUI counts them
        (each at least 64, / 8; 0 follows the other side's aspect ratio),
        with crop the largest centred part of the new aspect ratio first;
        the noise mask stays behind."""
        out = Latent()
        _lib.kiln_latent_upscale(byref(self._c), method.encode(), _c_int("width", width), _c_int("height", height),
                                 bool(crop), byref(out._c))
        return out

    def __repr__(self) -> str:
        mask = f" mask {self._c.mask_h}x{self._c.mask_w}" if self._c.noise_mask else ""
        return f"<kiln.Latent {'x'.join(map(str, self.shape))}{mask}>"


class Image(_Owned):
    """IMAGE: 8-bit RGB, (height, width, 3) row-major. Made by Image.load,
    Image.from_rgb, Model.vae_decode and Upscaler.upscale."""

    _struct = _Image
    _free = _lib.kiln_image_free

    @classmethod
    def _adopt(cls, c_image: _Image) -> "Image":
        """An Image taking over the pixels of a kiln_image the library filled."""
        image = cls()
        image._c = _Image.from_buffer_copy(c_image)
        return image

    @classmethod
    def load(cls, path) -> "Image":
        """LoadImage: a PNG or JPEG file (recognised by its bytes, EXIF
        orientation applied)."""
        image = cls()
        _lib.kiln_image_load(_path(path), byref(image._c))
        return image

    @classmethod
    def load_with_mask(cls, path) -> Tuple["Image", "Mask"]:
        """LoadImage's two outputs: the picture and its MASK (1 - alpha, as
        ComfyUI's mask editor saves it; 64x64 zeros for a file without
        alpha)."""
        image, mask = cls(), Mask()
        _lib.kiln_image_load_with_mask(_path(path), byref(image._c), byref(mask._c))
        return image, mask

    @classmethod
    def from_rgb(cls, width: int, height: int, data) -> "Image":
        """An image of width x height pixels from `data`: width * height * 3
        bytes (any bytes-like object), R, G, B row by row."""
        width, height, data = _c_int("width", width), _c_int("height", height), memoryview(data).cast("B")
        if width < 1 or height < 1 or len(data) != width * height * 3:
            raise ValueError(f"{len(data)} bytes for a {width}x{height} RGB image; expected "
                             f"{max(width, 0) * max(height, 0) * 3}")
        pixels = _libc.malloc(len(data))
        if not pixels:
            raise MemoryError(f"no memory for a {width}x{height} image")
        ctypes.memmove(pixels, bytes(data), len(data))
        return cls._adopt(_Image(width, height, 3, ctypes.cast(pixels, POINTER(c_uint8))))

    width = _struct_field("width")
    height = _struct_field("height")

    @property
    def pixels(self) -> bytes:
        """A copy of the pixels: height * width * 3 bytes, R, G, B row by row."""
        return ctypes.string_at(self._c.pixels, self.width * self.height * 3)

    def save(self, path, text: Optional[dict] = None) -> None:
        """SaveImage: a .png (with `text` as its text chunks, keys of 1-79
        printable ASCII characters) or a .jpg/.jpeg (keeping only the
        "parameters" text, as EXIF). The file appears whole or not at all."""
        items = [(str(key).encode(), str(value).encode()) for key, value in (text or {}).items()]
        c_text = (_PngText * max(len(items), 1))(*(_PngText(key, value) for key, value in items))
        _lib.kiln_image_save(_path(path), byref(self._c), c_text, len(items))

    def scale(self, width: int, height: int, method: str = "nearest-exact", crop: bool = False) -> "Image":
        """ImageScale: a new picture of width x height ("nearest-exact",
        "bilinear", "bicubic", "area" as torch interpolates, "lanczos" as Pillow),
        with crop the largest centred part of that aspect ratio first."""
        out = Image()
        _lib.kiln_image_scale(byref(self._c), method.encode(), _c_int("width", width), _c_int("height", height),
                              bool(crop), byref(out._c))
        return out

    def add_noise(self, seed: int, strength: float = 0.5) -> "Image":
        """ImageAddNoise: strength x torch.randn(seed) of the picture's size
        added, clamped (a batch draws its noise at once: kiln_image_add_noise)."""
        out = Image()
        _lib.kiln_image_add_noise(byref(self._c), 1, _c_seed(seed), float(strength), byref(out._c))
        return out

    def stitch(self, other: "Image", direction: str = "right", match_image_size: bool = True, spacing_width: int = 0,
               spacing_color: str = "white") -> "Image":
        """ImageStitch: other put beside this picture toward direction ("right",
        "down", "left", "up"), resized (lanczos) to its height or width with
        match_image_size, else centred on it; spacing_width pixels of
        spacing_color ("white", "black", "red", "green", "blue") between."""
        out = Image()
        _lib.kiln_image_stitch(byref(self._c), byref(other._c), direction.encode(), bool(match_image_size),
                               _c_int("spacing_width", spacing_width), spacing_color.encode(), byref(out._c))
        return out

    def resize_and_pad(self, target_width: int, target_height: int, padding_color: str = "white",
                       interpolation: str = "area") -> "Image":
        """ResizeAndPadImage: scaled to fit target_width x target_height,
        centred on padding_color ("white" or "black")."""
        out = Image()
        _lib.kiln_image_resize_and_pad(byref(self._c), _c_int("target_width", target_width),
                                       _c_int("target_height", target_height), padding_color.encode(),
                                       interpolation.encode(), byref(out._c))
        return out

    def scale_to_max_dimension(self, largest_size: int, upscale_method: str = "area") -> "Image":
        """ImageScaleToMaxDimension: scaled so that the longer side is largest_size."""
        out = Image()
        _lib.kiln_image_scale_to_max_dimension(byref(self._c), upscale_method.encode(),
                                               _c_int("largest_size", largest_size), byref(out._c))
        return out

    @classmethod
    def empty(cls, width: int, height: int, color: int = 0) -> "Image":
        """EmptyImage: width x height of color (0xRRGGBB)."""
        image = cls()
        if not 0 <= int(color) <= 0xFFFFFF:
            raise ValueError(f"color {color:#x}: 0 to 0xFFFFFF")
        _lib.kiln_image_empty(_c_int("width", width), _c_int("height", height), int(color), byref(image._c))
        return image

    def invert(self) -> "Image":
        """ImageInvert: 1 - the picture."""
        out = Image()
        _lib.kiln_image_invert(byref(self._c), byref(out._c))
        return out

    def blend(self, other: "Image", blend_factor: float = 0.5, blend_mode: str = "normal") -> "Image":
        """ImageBlend: other (resized to this picture's size where it differs)
        blended onto this one by blend_mode ("normal", "multiply", "screen",
        "overlay", "soft_light", "difference"), mixed in by blend_factor."""
        out = Image()
        _lib.kiln_image_blend(byref(self._c), byref(other._c), float(blend_factor), blend_mode.encode(), byref(out._c))
        return out

    def flip(self, vertically: bool) -> "Image":
        """ImageFlip: vertically ("x-axis") or horizontally ("y-axis")."""
        return _flip_rotate(self, _lib.kiln_image_flip_rotate, vertically=bool(vertically))

    def rotate(self, degrees: int) -> "Image":
        """ImageRotate: 0, 90, 180 or 270 degrees clockwise."""
        return _flip_rotate(self, _lib.kiln_image_flip_rotate, degrees=degrees)

    def canny(self, low_threshold: float = 0.4, high_threshold: float = 0.8) -> "Image":
        """Canny: the edges (kornia's canny, as ComfyUI's node runs it),
        white on black."""
        out = Image()
        _lib.kiln_image_canny(byref(self._c), float(low_threshold), float(high_threshold), byref(out._c))
        return out

    def morphology(self, operation: str, kernel_size: int = 3) -> "Image":
        """ImageMorphology: "erode", "dilate", "open", "close", "gradient",
        "top_hat" or "bottom_hat" with a square kernel (3 to 999)."""
        out = Image()
        _lib.kiln_image_morphology(byref(self._c), str(operation).encode(), _c_int("kernel_size", kernel_size),
                                   byref(out._c))
        return out

    def blur(self, blur_radius: int = 1, sigma: float = 1.0) -> "Image":
        """ImageBlur: the node's Gaussian of that radius (1 to 31) and sigma, the edges mirrored."""
        out = Image()
        _lib.kiln_image_blur(byref(self._c), _c_int("blur_radius", blur_radius), float(sigma), byref(out._c))
        return out

    def sharpen(self, sharpen_radius: int = 1, sigma: float = 1.0, alpha: float = 1.0) -> "Image":
        """ImageSharpen: the node's sharpening kernel of that radius, sigma and alpha."""
        out = Image()
        _lib.kiln_image_sharpen(byref(self._c), _c_int("sharpen_radius", sharpen_radius), float(sigma), float(alpha),
                                byref(out._c))
        return out

    def composite_masked(self, source: "Image", x: int = 0, y: int = 0, resize_source: bool = False,
                         mask: Optional["Mask"] = None) -> "Image":
        """ImageCompositeMasked: source pasted onto this picture at (x, y),
        weighted by mask (stretched over the source; None: everywhere),
        resized to this picture first with resize_source."""
        out = Image()
        _lib.kiln_image_composite_masked(byref(self._c), byref(source._c), _c_int("x", x), _c_int("y", y),
                                         bool(resize_source), byref(mask._c) if mask is not None else None,
                                         byref(out._c))
        return out

    def flux_kontext_scale(self) -> "Image":
        """FluxKontextImageScale: a new picture at FLUX.1 Kontext's
        preferred size nearest this one's aspect ratio (centre cut, Pillow's
        LANCZOS)."""
        out = Image()
        _lib.kiln_flux_kontext_image_scale(byref(self._c), byref(out._c))
        return out

    def __repr__(self) -> str:
        return f"<kiln.Image {self.width}x{self.height}>"


class Mask(_Owned):
    """MASK: float weights (1 repaints, or where a prompt acts), (height,
    width) row-major. Made by Mask.load, Mask.solid, Mask.from_image,
    Image.load_with_mask and the methods below, each ComfyUI's mask node
    of that name, each a new Mask."""

    _struct = _Mask
    _free = _lib.kiln_mask_free

    width = _struct_field("width")
    height = _struct_field("height")

    @classmethod
    def load(cls, path, channel: str = "red") -> "Mask":
        """LoadImageMask: a channel ("red", "green", "blue" or "alpha", which
        is inverted: transparent repaints) of a PNG or JPEG over 255."""
        mask = cls()
        _lib.kiln_mask_load(_path(path), channel.encode(), byref(mask._c))
        return mask

    @classmethod
    def solid(cls, value: float, width: int, height: int) -> "Mask":
        """SolidMask: value (0 to 1) everywhere."""
        mask = cls()
        _lib.kiln_mask_solid(float(value), _c_int("width", width), _c_int("height", height), byref(mask._c))
        return mask

    @classmethod
    def from_image(cls, image: "Image", channel: str = "red") -> "Mask":
        """ImageToMask: a channel ("red", "green" or "blue") of the picture over 255."""
        mask = cls()
        _lib.kiln_mask_from_image(byref(image._c), channel.encode(), byref(mask._c))
        return mask

    @classmethod
    def from_color(cls, image: "Image", color: int) -> "Mask":
        """ImageColorToMask: 1 where the picture's pixel is color (0xRRGGBB), 0 elsewhere."""
        if not 0 <= int(color) <= 0xFFFFFF:
            raise ValueError(f"color {color:#x}: 0 to 0xFFFFFF")
        mask = cls()
        _lib.kiln_mask_from_color(byref(image._c), int(color), byref(mask._c))
        return mask

    @property
    def weights(self) -> List[float]:
        """A copy of the weights: height * width floats, row by row."""
        return self._c.weights[:self.width * self.height]

    def _made(self, function, *args) -> "Mask":
        out = Mask()
        function(byref(self._c), *args, byref(out._c))
        return out

    def to_image(self) -> "Image":
        """MaskToImage: a grey picture (bytes by SaveImage's rule)."""
        out = Image()
        _lib.kiln_mask_to_image(byref(self._c), byref(out._c))
        return out

    def invert(self) -> "Mask":
        """InvertMask: 1 - the mask."""
        return self._made(_lib.kiln_mask_invert)

    def threshold(self, value: float = 0.5) -> "Mask":
        """ThresholdMask: 1 where the mask is above value, else 0."""
        return self._made(_lib.kiln_mask_threshold, float(value))

    def crop(self, x: int, y: int, width: int, height: int) -> "Mask":
        """CropMask: width x height from (x, y), cut at the edges."""
        return self._made(_lib.kiln_mask_crop, _c_int("x", x), _c_int("y", y), _c_int("width", width),
                          _c_int("height", height))

    def composite(self, source: "Mask", x: int = 0, y: int = 0, operation: str = "multiply") -> "Mask":
        """MaskComposite: source at (x, y) on this mask, combined there by
        operation ("multiply", "add", "subtract", "and", "or", "xor": these
        three on the weights rounded to 0 or 1), clamped to [0, 1]."""
        out = Mask()
        _lib.kiln_mask_composite(byref(self._c), byref(source._c), _c_int("x", x), _c_int("y", y),
                                 operation.encode(), byref(out._c))
        return out

    def feather(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> "Mask":
        """FeatherMask: faded towards 0 over that many pixels from each edge, as the node fades."""
        return self._made(_lib.kiln_mask_feather, _c_int("left", left), _c_int("top", top), _c_int("right", right),
                          _c_int("bottom", bottom))

    def grow(self, expand: int, tapered_corners: bool = True) -> "Mask":
        """GrowMask: expand times grey dilation (below 0: erosion) over the
        3x3 cross (the square without tapered_corners)."""
        return self._made(_lib.kiln_mask_grow, _c_int("expand", expand), bool(tapered_corners))

    def __repr__(self) -> str:
        return f"<kiln.Mask {self.width}x{self.height}>"


def _flip_rotate(value, function, vertically: Optional[bool] = None, degrees: int = 0):
    """A Latent's or Image's flip (vertically or not: horizontally) or clockwise turn, by its library call."""
    if degrees not in (0, 90, 180, 270):
        raise ValueError(f"rotate {degrees}: 0, 90, 180 or 270")
    out = type(value)()
    function(byref(value._c), vertically is True, vertically is False, degrees // 90, byref(out._c))
    return out


def _mask_weights(mask: Union["Image", "Mask"]):
    """A mask's weights for the calls that take them, a Mask's own or an
    Image's red channel over 255: (pointer, width, height); the pointer keeps
    what it points to alive."""
    if isinstance(mask, Mask):
        return mask._c.weights, mask.width, mask.height
    weights = (c_float * (mask.width * mask.height))(*(v / 255.0 for v in mask.pixels[::3]))
    return ctypes.cast(weights, POINTER(c_float)), mask.width, mask.height


def _mask_picture(mask: Union["Image", "Mask"]) -> "Image":
    """A mask as the calls that read it as a picture take it (kiln_mask_picture:
    each weight rounded to the nearest 1/255)."""
    if isinstance(mask, Image):
        return mask
    out = Image()
    _lib.kiln_mask_picture(byref(mask._c), byref(out._c))
    return out
