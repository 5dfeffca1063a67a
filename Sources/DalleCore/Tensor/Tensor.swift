/// A dense float32 tensor in row-major order. Activations use NCHW.
///
/// `Tensor` is a value type backed by a Swift array; kernels take its storage with
/// `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer`.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    /// A tensor of zeros. Internal callers guarantee a valid shape.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.scalars = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// Wraps `scalars`; throws when their count does not match `shape`.
    public init(shape: [Int], scalars: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }), Tensor.elementCount(shape) == scalars.count else {
            throw DalleError.invalidArgument("tensor of shape \(shape) cannot hold \(scalars.count) values")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// Wraps scalars the caller built for `shape` itself (count already known to match).
    init(uncheckedShape shape: [Int], scalars: [Float]) {
        self.shape = shape
        self.scalars = scalars
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// Element count of `shape`, or nil when it overflows `Int`.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            let (r, o) = n.multipliedReportingOverflow(by: d)
            if o || d < 0 { return nil }
            n = r
        }
        return n
    }

    /// The same scalars seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, scalars: scalars)
    }
}
