// Pointwise activations shared by unary.comp, geglu.comp and group_norm.comp.

float silu(float v) { return v / (1.0 + exp(-v)); }

// GLSL has no erf. Abramowitz & Stegun 7.1.26: |error| < 1.5e-7 over the
// whole line, below f32 resolution of gelu's 0.5 x (1 + erf) for every x.
float erf_approx(float x)
{
    float a = abs(x);
    float t = 1.0 / (1.0 + 0.3275911 * a);
    float poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}

// The erf form, as torch.nn.functional.gelu(approximate="none").
float gelu(float v) { return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752)); }

// CLIP's x * sigmoid(1.702 x).
float quick_gelu(float v) { return v / (1.0 + exp(-1.702 * v)); }
