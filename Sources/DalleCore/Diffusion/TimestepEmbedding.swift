#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Diffusers' sinusoidal timestep embedding (`get_timestep_embedding`), in Float as the reference
/// computes it: for h = ⌊dim/2⌋ frequencies fᵢ = exp(−ln(maxPeriod)·i/(h − shift)), the row of a
/// timestep t is [sin(t·fᵢ)…, cos(t·fᵢ)…], or [cos…, sin…] with `flipSinToCos` (the UNets' and
/// the prior's `Timesteps(dim, True, 0)`), times `scale`; an odd `dim` ends with one zero.
///
/// Returns a [timesteps.count, dim] tensor. Throws `invalidArgument` for dim < 1, a shift that
/// leaves no denominator (h − shift = 0), or a timestep that is not finite.
public func timestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool = true, downscaleFreqShift: Float = 0,
                              scale: Float = 1, maxPeriod: Float = 10000) throws -> Tensor {
    guard dim >= 1, dim <= 1 << 24 else { throw DalleError.invalidArgument("timestep embedding width \(dim) (1 to \(1 << 24))") }
    let half = dim / 2
    let denominator = Float(half) - downscaleFreqShift
    guard half == 0 || (denominator != 0 && denominator.isFinite) else {
        throw DalleError.invalidArgument("timestep embedding: \(half) frequencies with shift \(downscaleFreqShift) divide by zero")
    }
    guard maxPeriod.isFinite, maxPeriod > 0 else { throw DalleError.invalidArgument("timestep embedding: max period \(maxPeriod)") }
    if let bad = timesteps.first(where: { !$0.isFinite }) {
        throw DalleError.invalidArgument("timestep embedding: timestep \(bad) is not finite")
    }
    // −ln(maxPeriod) is a Python float times a float32 arange: a float32 tensor.
    let logPeriod = Float(-log(Double(maxPeriod)))
    let frequencies = (0..<half).map { expf(logPeriod * Float($0) / denominator) }
    var out = [Float](repeating: 0, count: timesteps.count * dim)
    for (row, t) in timesteps.enumerated() {
        let base = row * dim
        for (i, f) in frequencies.enumerated() {
            let angle = scale * (t * f)
            let (first, second) = flipSinToCos ? (cosf(angle), sinf(angle)) : (sinf(angle), cosf(angle))
            out[base + i] = first
            out[base + half + i] = second
        }
    }
    return Tensor(uncheckedShape: [timesteps.count, dim], scalars: out)
}
