/* The PNG metadata: A1111's infotext against literal strings in its format,
 * and the ComfyUI prompt checked as a graph (every link lands on an existing
 * node's output of the type the input wants) and against ComfyUI's default
 * workflow. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metadata.h"
#include "pipeline.h"

static kiln_run_info txt2img(void)
{
    return (kiln_run_info){
        .model = "/models/checkpoints/v1-5-pruned-emaonly.safetensors",
        .prompt = "a red circle on a blue background",
        .negative_prompt = "blurry",
        .steps = 20,
        .sampler = "euler",
        .scheduler = "normal",
        .cfg = 7.0,
        .seed = 42,
        .width = 512,
        .height = 512,
        .batch_size = 1,
        .clip_skip = 1,
        .denoise = 1.0,
        .init_image = NULL,
        .version = "0.1.0",
    };
}

static kiln_run_info img2img(void)
{
    kiln_run_info run = txt2img();
    run.model = "sd15/my, model.ckpt";
    run.sampler = "dpmpp_2m";
    run.scheduler = "karras";
    run.cfg = 7.5;
    run.seed = UINT64_MAX;
    run.width = 768;
    run.height = 512;
    run.batch_size = 2;
    run.clip_skip = 2;
    run.denoise = 0.6;
    run.init_image = "/data/in/cat photo.png";
    return run;
}

static void assert_parameters(const kiln_run_info *run, int batch_index, const char *expect)
{
    char *text;
    assert_kiln_ok(kiln_metadata_parameters(run, batch_index, &text));
    assert_string_equal(text, expect);
    free(text);
}

static void parameters_txt2img(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, RNG: CPU, Version: kiln 0.1.0");

    /* No negative prompt, no line; an empty prompt is stripped away as A1111 does. */
    run.negative_prompt = "";
    run.prompt = "";
    run.sampler = "euler_ancestral";
    run.scheduler = "sgm_uniform";
    run.cfg = 4.25;
    assert_parameters(&run, 0,
                      "Steps: 20, Sampler: Euler a, Schedule type: SGM Uniform, CFG scale: 4.25, Seed: 42, "
                      "Size: 512x512, Model: v1-5-pruned-emaonly, RNG: CPU, Version: kiln 0.1.0");
}

static void parameters_img2img(void **state)
{
    (void)state;
    kiln_run_info run = img2img();
    /* The comma in the model name makes A1111 quote it. */
    assert_parameters(&run, 1,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, "
                      "Seed: 18446744073709551615, Size: 768x512, Model: \"my, model\", Batch size: 2, Batch pos: 1, "
                      "Denoising strength: 0.6, Clip skip: 2, RNG: CPU, Version: kiln 0.1.0");

    /* Quoting escapes as json.dumps(ensure_ascii=False) does; UTF-8 passes. */
    run.model = "x:\"caf\xc3\xa9\"\\\t.safetensors";
    run.sampler = "res_multistep"; /* no A1111 name: kept as given */
    run.batch_size = 1;
    run.clip_skip = 1;
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: res_multistep, Schedule type: Karras, CFG scale: 7.5, "
                      "Seed: 18446744073709551615, Size: 768x512, Model: \"x:\\\"caf\xc3\xa9\\\"\\\\\\t\", "
                      "Denoising strength: 0.6, RNG: CPU, Version: kiln 0.1.0");
}

static const kiln_lora two_loras[] = {
    {"/loras/detail tweaker.safetensors", 0.8, 0.8},
    {"style.v2.safetensors", 1.0, 0.5},
};

/* A1111 writes the LoRAs it used into the prompt; equal strengths as one
 * multiplier, else te= and unet=. */
static void parameters_with_loras(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    run.loras = two_loras;
    run.nloras = 2;
    assert_parameters(&run, 0,
                      "a red circle on a blue background <lora:detail tweaker:0.8> <lora:style.v2:te=0.5:unet=1>\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, RNG: CPU, Version: kiln 0.1.0");
}

static void labels_follow_a1111(void **state)
{
    (void)state;
    const char *samplers[][2] = {
        {"euler", "Euler"},         {"euler_ancestral", "Euler a"}, {"heun", "Heun"},
        {"dpm_2", "DPM2"},          {"dpm_2_ancestral", "DPM2 a"},  {"lms", "LMS"},
        {"dpmpp_2s_ancestral", "DPM++ 2S a"}, {"dpmpp_sde", "DPM++ SDE"}, {"dpmpp_2m", "DPM++ 2M"},
        {"dpmpp_2m_sde", "DPM++ 2M SDE"}, {"dpmpp_3m_sde", "DPM++ 3M SDE"}, {"ddim", "DDIM"},
        {"uni_pc", "UniPC"},        {"lcm", "LCM"},                 {"deis", "deis"},
    };
    for (size_t i = 0; i < sizeof samplers / sizeof samplers[0]; i++)
        assert_string_equal(kiln_metadata_sampler_label(samplers[i][0]), samplers[i][1]);
    const char *schedulers[][2] = {
        {"normal", "Normal"}, {"karras", "Karras"}, {"exponential", "Exponential"}, {"sgm_uniform", "SGM Uniform"},
        {"simple", "Simple"}, {"ddim_uniform", "DDIM"}, {"beta", "Beta"}, {"kl_optimal", "KL Optimal"},
        {"linear_quadratic", "linear_quadratic"},
    };
    for (size_t i = 0; i < sizeof schedulers / sizeof schedulers[0]; i++)
        assert_string_equal(kiln_metadata_scheduler_label(schedulers[i][0]), schedulers[i][1]);
}

static void bad_runs_are_refused(void **state)
{
    (void)state;
    char *text = (char *)"untouched";
    kiln_run_info run = txt2img();
    run.sampler = NULL;
    assert_int_equal(kiln_metadata_parameters(&run, 0, &text), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "sampler"));
    assert_null(text);
    assert_int_equal(kiln_metadata_prompt(&run, &text), KILN_ERR_INVALID_ARG);
    run = txt2img();
    run.denoise = 0.0;
    assert_int_equal(kiln_metadata_prompt(&run, &text), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "denoise"));
    run = txt2img();
    assert_int_equal(kiln_metadata_parameters(&run, 1, &text), KILN_ERR_INVALID_ARG); /* batch of 1 */
}

/* ---- the ComfyUI prompt as a graph ------------------------------------------ */

/* What ComfyUI's nodes output, in order, and the type each linked input takes. */
static const struct { const char *class_type; const char *outputs[3]; } node_outputs[] = {
    {"CheckpointLoaderSimple", {"MODEL", "CLIP", "VAE"}},
    {"CLIPSetLastLayer", {"CLIP"}},
    {"CLIPTextEncode", {"CONDITIONING"}},
    {"EmptyLatentImage", {"LATENT"}},
    {"LoadImage", {"IMAGE", "MASK"}},
    {"VAEEncode", {"LATENT"}},
    {"RepeatLatentBatch", {"LATENT"}},
    {"KSampler", {"LATENT"}},
    {"VAEDecode", {"IMAGE"}},
    {"SaveImage", {NULL}},
    {"LoraLoader", {"MODEL", "CLIP"}},
    {"ControlNetLoader", {"CONTROL_NET"}},
    {"LoadImageMask", {"MASK"}},
    {"VAEEncodeForInpaint", {"LATENT"}},
    {"SetLatentNoiseMask", {"LATENT"}},
    {"ImagePadForOutpaint", {"IMAGE", "MASK"}},
    {"InstructPixToPixConditioning", {"CONDITIONING", "CONDITIONING", "LATENT"}},
    {"InpaintModelConditioning", {"CONDITIONING", "CONDITIONING", "LATENT"}},
    {"FluxGuidance", {"CONDITIONING"}},
    {"DifferentialDiffusion", {"MODEL"}},
    {"VAEDecodeTiled", {"IMAGE"}},
    {"LatentUpscaleBy", {"LATENT"}},
    {"UpscaleModelLoader", {"UPSCALE_MODEL"}},
    {"ImageUpscaleWithModel", {"IMAGE"}},
    {"ControlNetApplyAdvanced", {"CONDITIONING", "CONDITIONING"}},
    {"ModelSamplingDiscrete", {"MODEL"}},
    {"IPAdapterModelLoader", {"IPADAPTER"}},
    {"CLIPVisionLoader", {"CLIP_VISION"}},
    {"IPAdapterAdvanced", {"MODEL"}},
    {"ImageBatch", {"IMAGE"}},
    {"CLIPTextEncodeSDXL", {"CONDITIONING"}},
    {"CLIPTextEncodeSDXLRefiner", {"CONDITIONING"}},
    {"KSamplerAdvanced", {"LATENT"}},
    {"SetUnionControlNetType", {"CONTROL_NET"}},
    {"StyleModelLoader", {"STYLE_MODEL"}},
    {"CLIPVisionEncode", {"CLIP_VISION_OUTPUT"}},
    {"StyleModelApply", {"CONDITIONING"}},
    {"ReferenceLatent", {"CONDITIONING"}},
};

static const struct { const char *input, *type; } input_types[] = {
    {"model", "MODEL"},    {"clip", "CLIP"},     {"positive", "CONDITIONING"}, {"negative", "CONDITIONING"},
    {"latent_image", "LATENT"}, {"samples", "LATENT"}, {"vae", "VAE"}, {"images", "IMAGE"}, {"pixels", "IMAGE"},
    {"control_net", "CONTROL_NET"}, {"image", "IMAGE"}, {"image1", "IMAGE"}, {"image2", "IMAGE"}, {"mask", "MASK"},
    {"upscale_model", "UPSCALE_MODEL"}, {"ipadapter", "IPADAPTER"}, {"clip_vision", "CLIP_VISION"},
    {"conditioning", "CONDITIONING"}, {"style_model", "STYLE_MODEL"}, {"clip_vision_output", "CLIP_VISION_OUTPUT"},
    {"latent", "LATENT"},
};

static const char *output_type(const char *class_type, int index)
{
    for (size_t i = 0; i < sizeof node_outputs / sizeof node_outputs[0]; i++)
        if (strcmp(node_outputs[i].class_type, class_type) == 0)
            return index >= 0 && index < 3 ? node_outputs[i].outputs[index] : NULL;
    fail_msg("unknown class_type %s", class_type);
    return NULL;
}

/* Every node has a known class_type and inputs; every array input is a
 * link ["id", n] to an existing node whose output n has the input's type. */
static void assert_valid_graph(const cJSON *root)
{
    assert_true(cJSON_IsObject(root));
    const cJSON *node;
    cJSON_ArrayForEach(node, root)
    {
        const cJSON *class_type = cJSON_GetObjectItemCaseSensitive(node, "class_type");
        const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(node, "inputs");
        assert_true(cJSON_IsString(class_type));
        assert_true(cJSON_IsObject(inputs));
        output_type(class_type->valuestring, 0);
        const cJSON *input;
        cJSON_ArrayForEach(input, inputs)
        {
            if (!cJSON_IsArray(input)) continue;
            assert_int_equal(cJSON_GetArraySize(input), 2);
            const cJSON *id = cJSON_GetArrayItem(input, 0), *slot = cJSON_GetArrayItem(input, 1);
            assert_true(cJSON_IsString(id));
            assert_true(cJSON_IsNumber(slot));
            const cJSON *source = cJSON_GetObjectItemCaseSensitive(root, id->valuestring);
            if (!source)
                fail_msg("node %s input %s links to missing node %s", node->string, input->string, id->valuestring);
            const char *source_class = cJSON_GetObjectItemCaseSensitive(source, "class_type")->valuestring;
            const char *type = output_type(source_class, slot->valueint);
            const char *want = NULL;
            for (size_t i = 0; i < sizeof input_types / sizeof input_types[0]; i++)
                if (strcmp(input_types[i].input, input->string) == 0) want = input_types[i].type;
            if (!want || !type || strcmp(type, want) != 0)
                fail_msg("node %s (%s) input %s <- %s output %d (%s), wants %s", node->string,
                         class_type->valuestring, input->string, source_class, slot->valueint, type ? type : "none",
                         want ? want : "?");
        }
    }
}

static const cJSON *inputs_of(const cJSON *root, const char *id, const char *class_type)
{
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(root, id);
    if (!node) fail_msg("no node %s", id);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(node, "class_type")->valuestring, class_type);
    return cJSON_GetObjectItemCaseSensitive(node, "inputs");
}

static void assert_link(const cJSON *inputs, const char *name, const char *id, int slot)
{
    const cJSON *link = cJSON_GetObjectItemCaseSensitive(inputs, name);
    if (!cJSON_IsArray(link)) fail_msg("input %s is not a link", name);
    assert_string_equal(cJSON_GetArrayItem(link, 0)->valuestring, id);
    assert_int_equal(cJSON_GetArrayItem(link, 1)->valueint, slot);
}

static const char *string_input(const cJSON *inputs, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(inputs, name);
    if (!cJSON_IsString(v)) fail_msg("input %s is not a string", name);
    return v->valuestring;
}

static double number_input(const cJSON *inputs, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(inputs, name);
    if (!cJSON_IsNumber(v)) fail_msg("input %s is not a number", name);
    return v->valuedouble;
}

/* Parses the prompt and checks it is a valid graph with exactly `nodes`. */
static cJSON *prompt_graph(const kiln_run_info *run, char **json, const char *nodes)
{
    assert_kiln_ok(kiln_metadata_prompt(run, json));
    cJSON *root = cJSON_Parse(*json);
    if (!root) fail_msg("not JSON: %s", *json);
    assert_valid_graph(root);
    char ids[256] = "";
    const cJSON *node;
    cJSON_ArrayForEach(node, root)
    {
        assert_true(strlen(ids) + strlen(node->string) + 2 <= sizeof ids);
        strcat(ids, node->string);
        strcat(ids, " ");
    }
    assert_string_equal(ids, nodes);
    return root;
}

/* ComfyUI's default workflow (script_examples/basic_api_example.py): the
 * same ids, classes and links. */
static void prompt_txt2img_is_the_default_workflow(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 ");
    const cJSON *in = inputs_of(root, "3", "KSampler");
    assert_link(in, "model", "4", 0);
    assert_link(in, "positive", "6", 0);
    assert_link(in, "negative", "7", 0);
    assert_link(in, "latent_image", "5", 0);
    assert_true(number_input(in, "seed") == 42);
    assert_true(number_input(in, "steps") == 20);
    assert_true(number_input(in, "cfg") == 7.0);
    assert_true(number_input(in, "denoise") == 1.0);
    assert_string_equal(string_input(in, "sampler_name"), "euler");
    assert_string_equal(string_input(in, "scheduler"), "normal");
    in = inputs_of(root, "4", "CheckpointLoaderSimple");
    assert_string_equal(string_input(in, "ckpt_name"), "v1-5-pruned-emaonly.safetensors");
    in = inputs_of(root, "5", "EmptyLatentImage");
    assert_true(number_input(in, "width") == 512 && number_input(in, "height") == 512);
    assert_true(number_input(in, "batch_size") == 1);
    in = inputs_of(root, "6", "CLIPTextEncode");
    assert_string_equal(string_input(in, "text"), "a red circle on a blue background");
    assert_link(in, "clip", "4", 1);
    in = inputs_of(root, "7", "CLIPTextEncode");
    assert_string_equal(string_input(in, "text"), "blurry");
    assert_link(in, "clip", "4", 1);
    in = inputs_of(root, "8", "VAEDecode");
    assert_link(in, "samples", "3", 0);
    assert_link(in, "vae", "4", 2);
    in = inputs_of(root, "9", "SaveImage");
    assert_link(in, "images", "8", 0);
    assert_true(strlen(string_input(in, "filename_prefix")) > 0);
    cJSON_Delete(root);
    free(json);
}

static void prompt_img2img_with_clip_skip(void **state)
{
    (void)state;
    kiln_run_info run = img2img();
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 12 13 ");
    /* The seed is exact in the text, beyond a double's 53 bits. */
    assert_non_null(strstr(json, "\"seed\":18446744073709551615"));
    const cJSON *in = inputs_of(root, "3", "KSampler");
    assert_link(in, "latent_image", "13", 0);
    assert_true(number_input(in, "denoise") == 0.6);
    assert_true(number_input(in, "cfg") == 7.5);
    assert_string_equal(string_input(in, "sampler_name"), "dpmpp_2m");
    assert_string_equal(string_input(in, "scheduler"), "karras");
    assert_string_equal(string_input(inputs_of(root, "4", "CheckpointLoaderSimple"), "ckpt_name"), "my, model.ckpt");
    in = inputs_of(root, "10", "CLIPSetLastLayer");
    assert_true(number_input(in, "stop_at_clip_layer") == -2);
    assert_link(in, "clip", "4", 1);
    assert_link(inputs_of(root, "6", "CLIPTextEncode"), "clip", "10", 0);
    assert_link(inputs_of(root, "7", "CLIPTextEncode"), "clip", "10", 0);
    assert_string_equal(string_input(inputs_of(root, "11", "LoadImage"), "image"), "cat photo.png");
    in = inputs_of(root, "12", "VAEEncode");
    assert_link(in, "pixels", "11", 0);
    assert_link(in, "vae", "4", 2);
    in = inputs_of(root, "13", "RepeatLatentBatch");
    assert_link(in, "samples", "12", 0);
    assert_true(number_input(in, "amount") == 2);
    cJSON_Delete(root);
    free(json);

    /* A single image needs no RepeatLatentBatch; no clip skip, no CLIPSetLastLayer. */
    run.batch_size = 1;
    run.clip_skip = 1;
    run.negative_prompt = NULL;
    run.prompt = "quote \" and \\ and\nnewline, caf\xc3\xa9";
    root = prompt_graph(&run, &json, "3 4 6 7 8 9 11 12 ");
    assert_link(inputs_of(root, "3", "KSampler"), "latent_image", "12", 0);
    assert_string_equal(string_input(inputs_of(root, "6", "CLIPTextEncode"), "text"), run.prompt);
    assert_string_equal(string_input(inputs_of(root, "7", "CLIPTextEncode"), "text"), "");
    cJSON_Delete(root);
    free(json);
}

/* LoraLoaders chain from the checkpoint; KSampler takes the last one's model,
 * CLIPSetLastLayer (or the text encoders) its CLIP. */
static void prompt_with_loras(void **state)
{
    (void)state;
    kiln_run_info run = img2img();
    run.loras = two_loras;
    run.nloras = 2;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 14 15 11 12 13 ");
    const cJSON *in = inputs_of(root, "14", "LoraLoader");
    assert_string_equal(string_input(in, "lora_name"), "detail tweaker.safetensors");
    assert_true(number_input(in, "strength_model") == 0.8 && number_input(in, "strength_clip") == 0.8);
    assert_link(in, "model", "4", 0);
    assert_link(in, "clip", "4", 1);
    in = inputs_of(root, "15", "LoraLoader");
    assert_string_equal(string_input(in, "lora_name"), "style.v2.safetensors");
    assert_true(number_input(in, "strength_model") == 1.0 && number_input(in, "strength_clip") == 0.5);
    assert_link(in, "model", "14", 0);
    assert_link(in, "clip", "14", 1);
    assert_link(inputs_of(root, "3", "KSampler"), "model", "15", 0);
    assert_link(inputs_of(root, "10", "CLIPSetLastLayer"), "clip", "15", 1);
    assert_link(inputs_of(root, "12", "VAEEncode"), "vae", "4", 2);
    assert_link(inputs_of(root, "8", "VAEDecode"), "vae", "4", 2);
    cJSON_Delete(root);
    free(json);

    run = txt2img();
    run.loras = two_loras;
    run.nloras = 1;
    root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 14 ");
    assert_link(inputs_of(root, "6", "CLIPTextEncode"), "clip", "14", 1);
    assert_link(inputs_of(root, "7", "CLIPTextEncode"), "clip", "14", 1);
    assert_link(inputs_of(root, "3", "KSampler"), "model", "14", 0);
    cJSON_Delete(root);
    free(json);
}

/* Apply ControlNet: A1111's ControlNet extension field, and in the workflow
 * the loader, the hint image and the node both conditionings pass through;
 * a second one chained after the first, as a unit and nodes of its own. */
static void controlnet_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    const kiln_run_control controls[2] = {
        {"/models/controlnet/control_v11p_sd15_canny.safetensors", "edges/cat, edges.png", 0.85, 0.1, 0.75, NULL, NULL, 0, 0},
        {"/models/controlnet/control_v11f1p_sd15_depth.safetensors", "depth.png", 0.5, 0.0, 1.0, NULL, NULL, 0, 0},
    };
    run.controls = controls;
    run.ncontrols = 1;
    run.clip_skip = 2;
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, Clip skip: 2, ControlNet 0: \"Module: none, Model: "
                      "control_v11p_sd15_canny, Weight: 0.85, Resize Mode: Crop and Resize, Guidance Start: 0.1, "
                      "Guidance End: 0.75\", RNG: CPU, Version: kiln 0.1.0");
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 10 40 41 42 ");
    const cJSON *in = inputs_of(root, "3", "KSampler");
    assert_link(in, "positive", "42", 0);
    assert_link(in, "negative", "42", 1);
    assert_string_equal(string_input(inputs_of(root, "40", "ControlNetLoader"), "control_net_name"),
                        "control_v11p_sd15_canny.safetensors");
    assert_string_equal(string_input(inputs_of(root, "41", "LoadImage"), "image"), "cat, edges.png");
    in = inputs_of(root, "42", "ControlNetApplyAdvanced");
    assert_link(in, "positive", "6", 0);
    assert_link(in, "negative", "7", 0);
    assert_link(in, "control_net", "40", 0);
    assert_link(in, "image", "41", 0);
    assert_link(in, "vae", "4", 2); /* what a Flux ControlNet of InstantX's kind encodes its hint with */
    assert_true(number_input(in, "strength") == 0.85);
    assert_true(number_input(in, "start_percent") == 0.1 && number_input(in, "end_percent") == 0.75);
    cJSON_Delete(root);
    free(json);

    run.ncontrols = 2;
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, Clip skip: 2, ControlNet 0: \"Module: none, Model: "
                      "control_v11p_sd15_canny, Weight: 0.85, Resize Mode: Crop and Resize, Guidance Start: 0.1, "
                      "Guidance End: 0.75\", ControlNet 1: \"Module: none, Model: control_v11f1p_sd15_depth, Weight: "
                      "0.5, Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1\", RNG: CPU, "
                      "Version: kiln 0.1.0");
    root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 10 40 41 42 120 121 122 ");
    in = inputs_of(root, "3", "KSampler");
    assert_link(in, "positive", "122", 0);
    assert_link(in, "negative", "122", 1);
    assert_string_equal(string_input(inputs_of(root, "120", "ControlNetLoader"), "control_net_name"),
                        "control_v11f1p_sd15_depth.safetensors");
    assert_string_equal(string_input(inputs_of(root, "121", "LoadImage"), "image"), "depth.png");
    in = inputs_of(root, "122", "ControlNetApplyAdvanced");
    assert_link(in, "positive", "42", 0);
    assert_link(in, "negative", "42", 1);
    assert_link(in, "control_net", "120", 0);
    assert_link(in, "image", "121", 0);
    assert_true(number_input(in, "strength") == 0.5);
    assert_true(number_input(in, "start_percent") == 0.0 && number_input(in, "end_percent") == 1.0);
    cJSON_Delete(root);
    free(json);

    /* a union ControlNet's type: SetUnionControlNetType between its loader and its Apply */
    const kiln_run_control typed[2] = {controls[0], {"union.safetensors", "depth.png", 0.5, 0.0, 1.0, "depth", NULL, 0, 0}};
    run.controls = typed;
    root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 10 40 41 42 120 190 121 122 ");
    in = inputs_of(root, "190", "SetUnionControlNetType");
    assert_link(in, "control_net", "120", 0);
    assert_string_equal(string_input(in, "type"), "depth");
    assert_link(inputs_of(root, "122", "ControlNetApplyAdvanced"), "control_net", "190", 0);
    assert_link(inputs_of(root, "42", "ControlNetApplyAdvanced"), "control_net", "40", 0);
    cJSON_Delete(root);
    free(json);
}

/* FLUX.1 Redux: per unit StyleModelLoader, CLIPVisionLoader, LoadImage,
 * CLIPVisionEncode and StyleModelApply, chained on the positive prompt after
 * FluxGuidance; KSampler and a ControlNet take the last one's output. */
static void redux_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    run.flux_guidance = 3.5;
    const kiln_run_style styles[2] = {
        {"/models/style_models/flux1-redux-dev.safetensors", "/models/clip_vision/sigclip_vision_patch14_384.safetensors",
         "refs/a cat.png", 0.8},
        {"/models/style_models/flux1-redux-dev.safetensors", "/models/clip_vision/sigclip_vision_patch14_384.safetensors",
         "refs/style.png", 0.5},
    };
    run.styles = styles;
    run.nstyles = 2;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 30 8 9 200 201 202 203 204 205 206 207 208 209 ");
    assert_link(inputs_of(root, "3", "KSampler"), "positive", "209", 0);
    const cJSON *in = inputs_of(root, "204", "StyleModelApply");
    assert_link(in, "conditioning", "30", 0);
    assert_link(in, "style_model", "200", 0);
    assert_link(in, "clip_vision_output", "203", 0);
    assert_true(number_input(in, "strength") == 0.8);
    assert_string_equal(string_input(in, "strength_type"), "multiply");
    assert_link(inputs_of(root, "209", "StyleModelApply"), "conditioning", "204", 0);
    in = inputs_of(root, "203", "CLIPVisionEncode");
    assert_string_equal(string_input(in, "crop"), "center");
    assert_link(in, "clip_vision", "201", 0);
    assert_link(in, "image", "202", 0);
    assert_string_equal(string_input(inputs_of(root, "200", "StyleModelLoader"), "style_model_name"),
                        "flux1-redux-dev.safetensors");
    assert_string_equal(string_input(inputs_of(root, "207", "LoadImage"), "image"), "style.png");
    cJSON_Delete(root);
    free(json);
    /* FLUX.1 Kontext's pictures: LoadImage, VAEEncode and ReferenceLatent each, chained before FluxGuidance */
    static const char *const refs[2] = {"/in/room.png", "/in/chair.png"};
    run.references = refs;
    run.nreferences = 2;
    root = prompt_graph(&run, &json, "3 4 5 6 7 240 241 242 243 244 245 30 8 9 200 201 202 203 204 205 206 207 208 209 ");
    in = inputs_of(root, "245", "ReferenceLatent");
    assert_link(in, "conditioning", "242", 0);
    assert_link(in, "latent", "244", 0);
    assert_link(inputs_of(root, "242", "ReferenceLatent"), "conditioning", "6", 0);
    assert_link(inputs_of(root, "244", "VAEEncode"), "pixels", "243", 0);
    assert_string_equal(string_input(inputs_of(root, "243", "LoadImage"), "image"), "chair.png");
    assert_link(inputs_of(root, "30", "FluxGuidance"), "conditioning", "245", 0);
    cJSON_Delete(root);
    free(json);
    run.nreferences = 0;
    const kiln_run_control control = {"cn.safetensors", "edges.png", 1.0, 0.0, 1.0, NULL, NULL, 0, 0};
    run.controls = &control;
    run.ncontrols = 1;
    root = prompt_graph(&run, &json, "3 4 5 6 7 30 8 9 200 201 202 203 204 205 206 207 208 209 40 41 42 ");
    assert_link(inputs_of(root, "42", "ControlNetApplyAdvanced"), "positive", "209", 0);
    assert_link(inputs_of(root, "3", "KSampler"), "positive", "42", 0);
    cJSON_Delete(root);
    free(json);
}

/* IPAdapter: the loaders, the picture, and IPAdapterAdvanced between the
 * last LoRA and ModelSamplingDiscrete, whose model KSampler takes. */
static void ip_adapter_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    const kiln_lora loras[1] = {{"/loras/detail.safetensors", 0.5, 0.5}};
    run.loras = loras;
    run.nloras = 1;
    run.prediction = "v";
    kiln_run_image_prompt ips[2] = {
        {"/models/ipadapter/ip-adapter_sd15.safetensors", "/models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
         "refs/a cat.png", 0.6, 0.1, 0.9, NULL, 0},
        {"/models/ipadapter/ip-adapter-plus_sd15.safetensors",
         "/models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "refs/style.png", 0.3, 0.0, 1.0, NULL, 0},
    };
    run.image_prompts = ips;
    run.nimage_prompts = 1;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 80 14 100 101 103 102 ");
    assert_link(inputs_of(root, "3", "KSampler"), "model", "80", 0);
    assert_link(inputs_of(root, "80", "ModelSamplingDiscrete"), "model", "102", 0);
    const cJSON *in = inputs_of(root, "102", "IPAdapterAdvanced");
    assert_link(in, "model", "14", 0);
    assert_link(in, "ipadapter", "100", 0);
    assert_link(in, "clip_vision", "101", 0);
    assert_link(in, "image", "103", 0);
    assert_true(number_input(in, "weight") == 0.6);
    assert_string_equal(string_input(in, "weight_type"), "linear");
    assert_true(number_input(in, "start_at") == 0.1 && number_input(in, "end_at") == 0.9);
    assert_string_equal(string_input(inputs_of(root, "100", "IPAdapterModelLoader"), "ipadapter_file"),
                        "ip-adapter_sd15.safetensors");
    assert_string_equal(string_input(inputs_of(root, "101", "CLIPVisionLoader"), "clip_name"),
                        "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors");
    assert_string_equal(string_input(inputs_of(root, "103", "LoadImage"), "image"), "a cat.png");
    cJSON_Delete(root);
    free(json);
    /* a second, chained after the first: the model goes through both */
    run.nimage_prompts = 2;
    root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 80 14 100 101 103 102 150 151 153 152 ");
    assert_link(inputs_of(root, "80", "ModelSamplingDiscrete"), "model", "152", 0);
    in = inputs_of(root, "152", "IPAdapterAdvanced");
    assert_link(in, "model", "102", 0);
    assert_link(in, "ipadapter", "150", 0);
    assert_link(in, "clip_vision", "151", 0);
    assert_link(in, "image", "153", 0);
    assert_true(number_input(in, "weight") == 0.3);
    assert_true(number_input(in, "start_at") == 0.0 && number_input(in, "end_at") == 1.0);
    assert_string_equal(string_input(inputs_of(root, "150", "IPAdapterModelLoader"), "ipadapter_file"),
                        "ip-adapter-plus_sd15.safetensors");
    assert_string_equal(string_input(inputs_of(root, "153", "LoadImage"), "image"), "style.png");
    assert_link(inputs_of(root, "102", "IPAdapterAdvanced"), "model", "14", 0);
    cJSON_Delete(root);
    free(json);
    /* the second with two more pictures: LoadImage and ImageBatch pairs from "320" (its 20 ids), chained */
    const char *const more[2] = {"refs/b.png", "/refs/c.png"};
    ips[1].more_images = more;
    ips[1].nmore_images = 2;
    root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 80 14 100 101 103 102 150 151 153 320 321 322 323 152 ");
    assert_link(inputs_of(root, "152", "IPAdapterAdvanced"), "image", "323", 0);
    in = inputs_of(root, "323", "ImageBatch");
    assert_link(in, "image1", "321", 0);
    assert_link(in, "image2", "322", 0);
    in = inputs_of(root, "321", "ImageBatch");
    assert_link(in, "image1", "153", 0);
    assert_link(in, "image2", "320", 0);
    assert_string_equal(string_input(inputs_of(root, "322", "LoadImage"), "image"), "c.png");
    cJSON_Delete(root);
    free(json);
    ips[1].nmore_images = KILN_RUN_MAX_MORE_PICTURES + 1;
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "10 more pictures (at most 9)"));
    ips[1].nmore_images = 0;
    ips[1].image = NULL;
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "IP-Adapter"));
    run.nimage_prompts = 1;
    ips[0].start = 0.95;
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "from 0.95 to 0.9"));
}

/* SDXL's size numbers: the prompts through CLIPTextEncodeSDXL (the text in
 * both towers), the refiner's through CLIPTextEncodeSDXLRefiner with its
 * aesthetic scores. */
static void sdxl_numbers_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    const kiln_sdxl_cond numbers = {.width = 2048, .height = 1536, .crop_w = 64, .crop_h = 32,
                                    .target_width = 1024, .target_height = 768, .aesthetic = 7, .negative_aesthetic = 2};
    run.sdxl = &numbers;
    run.refiner = "/models/sd_xl_refiner_1.0.safetensors";
    run.refiner_switch = 0.8;
    run.refiner_step = 16;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 93 90 91 92 4 5 6 7 8 9 ");
    const cJSON *in = inputs_of(root, "6", "CLIPTextEncodeSDXL");
    assert_true(number_input(in, "width") == 2048 && number_input(in, "height") == 1536);
    assert_true(number_input(in, "crop_w") == 64 && number_input(in, "crop_h") == 32);
    assert_true(number_input(in, "target_width") == 1024 && number_input(in, "target_height") == 768);
    assert_string_equal(string_input(in, "text_g"), "a red circle on a blue background");
    assert_string_equal(string_input(in, "text_l"), "a red circle on a blue background");
    assert_string_equal(string_input(inputs_of(root, "7", "CLIPTextEncodeSDXL"), "text_g"), "blurry");
    in = inputs_of(root, "91", "CLIPTextEncodeSDXLRefiner");
    assert_true(number_input(in, "ascore") == 7 && number_input(in, "width") == 2048);
    assert_true(number_input(inputs_of(root, "92", "CLIPTextEncodeSDXLRefiner"), "ascore") == 2);
    cJSON_Delete(root);
    free(json);
}

/* A mask: VAEEncodeForInpaint for an inpainting model, VAEEncode and
 * SetLatentNoiseMask for another, both before RepeatLatentBatch. */
static void inpainting_recorded(void **state)
{
    (void)state;
    kiln_run_info run = img2img(); /* batch 2, clip skip 2 */
    run.mask = "/masks/cat mask.png";
    run.inpaint_model = true;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 51 50 13 ");
    const cJSON *in = inputs_of(root, "51", "VAEEncodeForInpaint");
    assert_link(in, "pixels", "11", 0);
    assert_link(in, "vae", "4", 2);
    assert_link(in, "mask", "50", 0);
    assert_true(number_input(in, "grow_mask_by") == 6);
    in = inputs_of(root, "50", "LoadImageMask");
    assert_string_equal(string_input(in, "image"), "cat mask.png");
    assert_string_equal(string_input(in, "channel"), "red");
    assert_link(inputs_of(root, "13", "RepeatLatentBatch"), "samples", "51", 0);
    assert_link(inputs_of(root, "3", "KSampler"), "latent_image", "13", 0);
    cJSON_Delete(root);
    free(json);

    run.inpaint_model = false;
    run.batch_size = 1;
    root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 12 52 50 ");
    in = inputs_of(root, "52", "SetLatentNoiseMask");
    assert_link(in, "samples", "12", 0);
    assert_link(in, "mask", "50", 0);
    assert_link(inputs_of(root, "3", "KSampler"), "latent_image", "52", 0);
    cJSON_Delete(root);
    free(json);
}

/* Outpainting: ImagePadForOutpaint between LoadImage and the encoder, its
 * picture to the encoder and its mask to VAEEncodeForInpaint or
 * SetLatentNoiseMask; no LoadImageMask. A mask and an outpaint together
 * are refused. */
static void outpainting_recorded(void **state)
{
    (void)state;
    kiln_run_info run = img2img();
    run.batch_size = 1;
    kiln_outpaint pad = {64, 0, 128, 32, 40};
    run.outpaint = &pad;
    run.inpaint_model = true;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 51 53 ");
    const cJSON *in = inputs_of(root, "53", "ImagePadForOutpaint");
    assert_link(in, "image", "11", 0);
    assert_true(number_input(in, "left") == 64 && number_input(in, "top") == 0);
    assert_true(number_input(in, "right") == 128 && number_input(in, "bottom") == 32);
    assert_true(number_input(in, "feathering") == 40);
    in = inputs_of(root, "51", "VAEEncodeForInpaint");
    assert_link(in, "pixels", "53", 0);
    assert_link(in, "mask", "53", 1);
    assert_link(inputs_of(root, "3", "KSampler"), "latent_image", "51", 0);
    cJSON_Delete(root);
    free(json);

    run.inpaint_model = false;
    root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 12 52 53 ");
    assert_link(inputs_of(root, "12", "VAEEncode"), "pixels", "53", 0);
    assert_link(inputs_of(root, "52", "SetLatentNoiseMask"), "mask", "53", 1);
    cJSON_Delete(root);
    free(json);

    run.mask = "m.png";
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "both a mask and an outpaint"));
}

/* InstructPix2Pix: InstructPixToPixConditioning takes the prompts (after
 * Apply ControlNet when there is one), the VAE and the picture, and gives
 * KSampler the prompts and its latent (through RepeatLatentBatch for a
 * batch); no VAEEncode. */
static void pix2pix_recorded(void **state)
{
    (void)state;
    kiln_run_info run = img2img(); /* batch 2 */
    run.instruct_pix2pix = true;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 11 54 13 ");
    const cJSON *in = inputs_of(root, "54", "InstructPixToPixConditioning");
    assert_link(in, "positive", "6", 0);
    assert_link(in, "negative", "7", 0);
    assert_link(in, "pixels", "11", 0);
    assert_link(in, "vae", "4", 2);
    assert_link(inputs_of(root, "13", "RepeatLatentBatch"), "samples", "54", 2);
    in = inputs_of(root, "3", "KSampler");
    assert_link(in, "positive", "54", 0);
    assert_link(in, "negative", "54", 1);
    assert_link(in, "latent_image", "13", 0);
    cJSON_Delete(root);
    free(json);

    run.batch_size = 1;
    const kiln_run_control control = {"cn.safetensors", "edges.png", 1.0, 0.0, 1.0, NULL, NULL, 0, 0};
    run.controls = &control;
    run.ncontrols = 1;
    root = prompt_graph(&run, &json, "3 4 6 7 8 9 10 40 41 42 11 54 ");
    in = inputs_of(root, "54", "InstructPixToPixConditioning");
    assert_link(in, "positive", "42", 0);
    assert_link(in, "negative", "42", 1);
    assert_link(inputs_of(root, "3", "KSampler"), "latent_image", "54", 2);
    cJSON_Delete(root);
    free(json);

    run.mask = "m.png";
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "InstructPix2Pix takes a picture and no mask"));
}

/* FLUX.1 Fill: InpaintModelConditioning takes the prompts (after
 * FluxGuidance), the VAE, the picture and the mask, and gives KSampler the
 * prompts and its latent; outpainting's canvas and mask come from
 * ImagePadForOutpaint. */
static void fill_recorded(void **state)
{
    (void)state;
    kiln_run_info run = img2img();
    run.batch_size = 1;
    run.mask = "mask.png";
    run.inpaint_model = run.inpaint_conditioning = true;
    run.flux_guidance = 30;
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 6 7 30 8 9 10 11 55 50 ");
    const cJSON *in = inputs_of(root, "55", "InpaintModelConditioning");
    assert_link(in, "positive", "30", 0);
    assert_link(in, "negative", "7", 0);
    assert_link(in, "pixels", "11", 0);
    assert_link(in, "mask", "50", 0);
    assert_link(in, "vae", "4", 2);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "noise_mask")));
    in = inputs_of(root, "3", "KSampler");
    assert_link(in, "positive", "55", 0);
    assert_link(in, "negative", "55", 1);
    assert_link(in, "latent_image", "55", 2);
    cJSON_Delete(root);
    free(json);

    /* DifferentialDiffusion "81" between the model and KSampler */
    run.differential = 0.5;
    root = prompt_graph(&run, &json, "3 4 6 7 30 8 9 81 10 11 55 50 ");
    in = inputs_of(root, "81", "DifferentialDiffusion");
    assert_link(in, "model", "4", 0);
    assert_true(number_input(in, "strength") == 0.5);
    assert_link(inputs_of(root, "3", "KSampler"), "model", "81", 0);
    cJSON_Delete(root);
    free(json);
    run.differential = 0;

    const kiln_outpaint pad = {8, 0, 8, 0, 40};
    run.mask = NULL;
    run.outpaint = &pad;
    root = prompt_graph(&run, &json, "3 4 6 7 30 8 9 10 11 55 53 ");
    in = inputs_of(root, "55", "InpaintModelConditioning");
    assert_link(in, "pixels", "53", 0);
    assert_link(in, "mask", "53", 1);
    cJSON_Delete(root);
    free(json);
}

/* A hires fix as A1111 writes it (the first pass's size; steps only when
 * they differ) and as ComfyUI's two-pass workflow: LatentUpscaleBy after
 * the first KSampler, a second KSampler with the same prompts and seed,
 * VAEDecode after it. */
static void hires_fix_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    run.hires_scale = 1.5, run.hires_steps = 12, run.hires_denoise = 0.55, run.hires_method = "nearest-exact";
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, Denoising strength: 0.55, Hires upscale: 1.5, Hires steps: 12, "
                      "Hires upscaler: Latent (nearest-exact), RNG: CPU, Version: kiln 0.1.0");
    run.hires_steps = 20, run.hires_method = "bilinear";
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, Denoising strength: 0.55, Hires upscale: 1.5, "
                      "Hires upscaler: Latent, RNG: CPU, Version: kiln 0.1.0");
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 60 61 ");
    const cJSON *in = inputs_of(root, "60", "LatentUpscaleBy");
    assert_string_equal(string_input(in, "upscale_method"), "bilinear");
    assert_true(number_input(in, "scale_by") == 1.5);
    assert_link(in, "samples", "3", 0);
    in = inputs_of(root, "61", "KSampler");
    assert_link(in, "latent_image", "60", 0);
    assert_link(in, "positive", "6", 0);
    assert_link(in, "negative", "7", 0);
    assert_true(number_input(in, "steps") == 20 && number_input(in, "denoise") == 0.55);
    assert_link(inputs_of(root, "8", "VAEDecode"), "samples", "61", 0);
    cJSON_Delete(root);
    free(json);
    run.init_image = "in.png";
    assert_int_equal(kiln_metadata_prompt(&run, &json), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "a hires fix needs txt2img"));
}

/* An upscale model: A1111's Extras fields, and UpscaleModelLoader and
 * ImageUpscaleWithModel between VAEDecode and SaveImage. */
static void upscale_recorded(void **state)
{
    (void)state;
    kiln_run_info run = txt2img();
    run.upscale_model = "/models/upscale_models/4x-UltraSharp.safetensors";
    run.upscale_by = 4;
    assert_parameters(&run, 0,
                      "a red circle on a blue background\n"
                      "Negative prompt: blurry\n"
                      "Steps: 20, Sampler: Euler, Schedule type: Normal, CFG scale: 7, Seed: 42, Size: 512x512, "
                      "Model: v1-5-pruned-emaonly, Postprocess upscale by: 4, Postprocess upscaler: 4x-UltraSharp, "
                      "RNG: CPU, Version: kiln 0.1.0");
    char *json;
    cJSON *root = prompt_graph(&run, &json, "3 4 5 6 7 8 9 70 71 ");
    assert_string_equal(string_input(inputs_of(root, "70", "UpscaleModelLoader"), "model_name"),
                        "4x-UltraSharp.safetensors");
    const cJSON *in = inputs_of(root, "71", "ImageUpscaleWithModel");
    assert_link(in, "upscale_model", "70", 0);
    assert_link(in, "image", "8", 0);
    assert_link(inputs_of(root, "9", "SaveImage"), "images", "71", 0);
    cJSON_Delete(root);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parameters_txt2img),
        cmocka_unit_test(parameters_img2img),
        cmocka_unit_test(labels_follow_a1111),
        cmocka_unit_test(bad_runs_are_refused),
        cmocka_unit_test(prompt_txt2img_is_the_default_workflow),
        cmocka_unit_test(prompt_img2img_with_clip_skip),
        cmocka_unit_test(parameters_with_loras),
        cmocka_unit_test(prompt_with_loras),
        cmocka_unit_test(controlnet_recorded),
        cmocka_unit_test(ip_adapter_recorded), cmocka_unit_test(redux_recorded),
        cmocka_unit_test(sdxl_numbers_recorded),
        cmocka_unit_test(inpainting_recorded),
        cmocka_unit_test(outpainting_recorded),
        cmocka_unit_test(pix2pix_recorded),
        cmocka_unit_test(fill_recorded),
        cmocka_unit_test(hires_fix_recorded),
        cmocka_unit_test(upscale_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
