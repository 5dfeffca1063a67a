@testable import DalleCore

/// Deterministic values in [-1, 1) for kernel and quantization tests (a 64-bit LCG's high half).
struct TestRandom {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
    }
    mutating func array(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
    mutating func tensor(_ shape: [Int]) -> Tensor { Tensor(uncheckedShape: shape, scalars: array(shape.reduce(1, *))) }
}
