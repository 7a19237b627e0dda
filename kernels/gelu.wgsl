// Exact (erf) GELU, included by kernels that apply it (`#include gelu`: elementwise.wgsl's gelu op,
// matmul.wgsl's GELU epilogue). Not a kernel on its own: it has no entry point.
// Expects `alias V = f32` or `alias V = vec4<f32>` in the including file.

// erfc(z) for z >= 0 with relative error < 1.2e-7 (Chebyshev fit of erfc(z) exp(z^2), Numerical
// Recipes' erfcc form); going through erfc keeps the negative GELU tail accurate (no 1 + erf cancellation).
fn erfc_pos(z: V) -> V {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
             t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

// x Phi(x), Phi(x) = 0.5 erfc(-x / sqrt 2) the standard normal CDF
fn gelu(x: V) -> V {
  let tail = 0.5 * erfc_pos(abs(x) * 0.70710678118654752);
  return x * select(1.0 - tail, tail, x < V(0.0));
}
