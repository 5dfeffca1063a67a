#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Spherical interpolation between two vectors (DALL·E 2's interpolations between CLIP embeddings):
/// with ω the angle between them, (sin((1 − t)ω)·a + sin(tω)·b) / sin ω, so the direction moves along
/// the great circle at constant speed and the length blends between |a| and |b|; t = 0 gives a,
/// t = 1 gives b. Computed in Double. When the two are (nearly) parallel or opposite (sin ω < 1e-7),
/// where no single great circle joins them, it is the straight blend (1 − t)·a + t·b.
///
/// Throws `invalidArgument` for vectors of different or zero length, a zero vector, or values or
/// a fraction that are not finite.
public func sphericalInterpolation(from a: [Float], to b: [Float], fraction t: Float) throws -> [Float] {
    guard a.count == b.count, !a.isEmpty else {
        throw DalleError.invalidArgument("spherical interpolation between vectors of \(a.count) and \(b.count) values")
    }
    guard t.isFinite else { throw DalleError.invalidArgument("spherical interpolation fraction \(t)") }
    guard a.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else {
        throw DalleError.invalidArgument("spherical interpolation of a vector with values that are not finite")
    }
    var dot = 0.0, normA = 0.0, normB = 0.0
    for i in 0..<a.count {
        let x = Double(a[i]), y = Double(b[i])
        dot += x * y; normA += x * x; normB += y * y
    }
    guard normA > 0, normB > 0 else { throw DalleError.invalidArgument("spherical interpolation from or to a zero vector") }
    let omega = acos(min(max(dot / (normA.squareRoot() * normB.squareRoot()), -1), 1))
    let s = sin(omega), u = Double(t)
    let (wa, wb) = s < 1e-7 ? (1 - u, u) : (sin((1 - u) * omega) / s, sin(u * omega) / s)
    return (0..<a.count).map { Float(wa * Double(a[$0]) + wb * Double(b[$0])) }
}
