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
func geluDerivative(_ x: Float) -> Float { normalCDF(x) + x * 0.39894228040143268 * expApproximation(-0.5 * x * x) }

/// eˣ within 1.2e-7 relative of float64's exp (checked in tests): Cephes' `expf`, x = n·ln 2 + r
/// with a polynomial for eʳ and 2ⁿ put into the exponent bits; x is clamped to [-87.34, 88.38]
/// (n from -126 to 127, normal floats). Branch- and call-free like `erfApproximation`.
@inline(__always)
func expApproximation(_ v: Float) -> Float {
    let x = min(max(v, -87.33654), 88.37626)
    let n = (x * 1.44269504088896341 + 0.5).rounded(.down)
    let r = x - n * 0.693359375 + n * 2.12194440e-4
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    return (p * r * r + r + 1) * Float(bitPattern: UInt32(bitPattern: (Int32(n) &+ 127) &<< 23))
}

/// x · sigmoid(1.702 · x), in place.
func quickGELU(_ x: inout [Float]) {
    x.withUnsafeMutableBufferPointer { p in
        for i in 0..<p.count { p[i] = p[i] / (1 + expf(-1.702 * p[i])) }
    }
}

/// SiLU, x · σ(x), in place (`expApproximation`, so the loop vectorises).
func silu(_ x: inout [Float]) {
    x.withUnsafeMutableBufferPointer { p in
        for i in 0..<p.count { p[i] = p[i] / (1 + expApproximation(-p[i])) }
    }
}
