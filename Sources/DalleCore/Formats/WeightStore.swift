/// Where a model's parameters come from: a safetensors file, a bundle, or memory.
/// Model code asks for each parameter by name and expected shape, so loading is
/// strict: a missing tensor or a wrong shape is an error naming the tensor.
public protocol WeightStore {
    /// Names of all tensors the store holds.
    var names: [String] { get }
    /// The tensor `name` as float32; throws `DalleError.badFile` when it is missing
    /// or its shape is not `shape`.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
    /// The tensor `name` in its stored precision (a view where the store can give one);
    /// the same errors as `tensor(_:shape:)`.
    func weight(_ name: String, shape: [Int]) throws -> Weight
}

extension WeightStore {
    /// An f32 copy of `tensor(name, shape:)`, for stores that hold no file to view.
    public func weight(_ name: String, shape: [Int]) throws -> Weight {
        Weight(try tensor(name, shape: shape))
    }
}

/// A `WeightStore` held in memory (random weights, tests, conversions).
public struct InMemoryWeights: WeightStore {
    public var tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor] = [:]) { self.tensors = tensors }
    public var names: [String] { tensors.keys.sorted() }
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let t = tensors[name] else { throw DalleError.badFile("missing tensor '\(name)'") }
        guard t.shape == shape else {
            throw DalleError.badFile("tensor '\(name)' has shape \(t.shape), expected \(shape)")
        }
        return t
    }
}
