#if canImport(Glibc)
import Glibc
#endif

/// erf(x) within 4.2e-7 of libm's `erff` (checked over [-10, 10] in tests): Eigen's and XLA's
/// rational approximation, an odd degree-13 polynomial over an even degree-8 one on x clamped to
/// [-4, 4] (beyond which erf rounds to ±1 in single precision). It has no branches and no calls,
/// so it runs ~15× faster than `erff`, which took 8 % of a transformer training step.
@inline(__always)
func erfApproximation(_ v: Float) -> Float {
    let x = min(max(v, -4), 4), x2 = x * x
    var p: Float = -2.72614225801306e-10
    p = p * x2 + 2.77068142495902e-08
    p = p * x2 - 2.10102402082508e-06
    p = p * x2 - 5.69250639462346e-05
    p = p * x2 - 7.34990630326855e-04
    p = p * x2 - 2.95459980854025e-03
    p = p * x2 - 1.60960333262415e-02
    var q: Float = -1.45660718464996e-05
    q = q * x2 - 2.13374055278905e-04
    q = q * x2 - 1.68282697438203e-03
    q = q * x2 - 7.37332916720468e-03
    q = q * x2 - 1.42647390514189e-02
    return x * p / q
}

/// Φ(x), the standard normal distribution function.
@inline(__always)
func normalCDF(_ x: Float) -> Float { 0.5 * (1 + erfApproximation(x * 0.70710678118654752)) }

/// The exact (erf) GELU, x · Φ(x), as PyTorch's `F.gelu`.
@inline(__always)
func gelu(_ x: Float) -> Float { x * normalCDF(x) }

/// d gelu / dx = Φ(x) + x · φ(x).
@inline(__always)
func geluDerivative(_ x: Float) -> Float { normalCDF(x) + x * 0.39894228040143268 * expf(-0.5 * x * x) }
