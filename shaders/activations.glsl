// Pointwise activations shared by unary.comp, geglu.comp and group_norm.comp.

float silu(float v) { return v / (1.0 + exp(-v)); }

// 0 where exp(-v) overflows to infinity (v below about -88.7), not NaN.
float sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }

// The activation op's functions, by kiln_activation_kind (runtime/ops.h).
const int ACTIVATION_TANH = 0;
const int ACTIVATION_ELU = 1;
const int ACTIVATION_HARDSWISH = 2;
const int ACTIVATION_SOFTSIGN = 3;
const int ACTIVATION_MISH = 4;

float activation(int kind, float v)
{
    // Clamped: some drivers' tanh is a quotient of exps, inf / inf for large
    // arguments; tanh(15) is 1 in f32 already.
    if (kind == ACTIVATION_TANH) return tanh(clamp(v, -15.0, 15.0));
    if (kind == ACTIVATION_ELU) return v > 0.0 ? v : exp(v) - 1.0;
    if (kind == ACTIVATION_HARDSWISH) return v * clamp(v + 3.0, 0.0, 6.0) / 6.0;
    if (kind == ACTIVATION_SOFTSIGN) return v / (1.0 + abs(v));
    // Mish, GLSL having no log1p: tanh(log(1 + e)) = ((1 + e)^2 - 1) /
    // ((1 + e)^2 + 1) = m / (m + 2), m = e (e + 2), e = exp(v), which keeps
    // its precision where e is tiny (log(1 + e) rounds to 0 there). v itself
    // above torch's softplus threshold 20, where m may be inf / inf.
    float e = exp(v), m = e * (e + 2.0);
    return v > 20.0 ? v : v * m / (m + 2.0);
}

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

// The tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (T5,
// PixArt), as x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)): the same value,
// since 0.5 (1 + tanh(u)) = sigmoid(2u), without GLSL's tanh, whose
// precision the spec leaves to sinh/cosh and which some drivers compute as
// a quotient of exps that is inf / inf for large arguments.
float gelu_tanh(float v) { return v / (1.0 + exp(-v * (1.5957691216057308 + 0.07135481627260025 * v * v))); }
