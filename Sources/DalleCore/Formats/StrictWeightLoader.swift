/// Reads a model's tensors from a `WeightStore` by name and expected shape, and records
/// every name it read, so that loading can reject the component's tensors the
/// configuration never used (a file for another configuration or another kind).
final class StrictWeightLoader {
    let store: WeightStore
    private(set) var used: Set<String> = []

    init(_ store: WeightStore) { self.store = store }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        used.insert(name)
        try requireRoom(name, shape: shape)
        let tensor = try store.tensor(name, shape: shape)
        try tensor.scalars.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress { try Weight.checkFinite(base, count: tensor.count, format: .f32, name: name) }
        }
        return tensor
    }

    /// The weight `name`, checked to hold only finite values (a NaN or infinity in a model
    /// file is an error naming the tensor, not garbage images later).
    func weight(_ name: String, shape: [Int]) throws -> Weight {
        used.insert(name)
        try requireRoom(name, shape: shape)
        let weight = try store.weight(name, shape: shape)
        try weight.checkFinite(name)
        return weight
    }

    /// Asks the system for the most a layer makes of one tensor (an f32 copy and a packed
    /// one), so that a refusal is `outOfMemory` naming the tensor.
    private func requireRoom(_ name: String, shape: [Int]) throws {
        try WorkingMemory.require(WorkingMemory.product(shape + [2, MemoryLayout<Float>.size]), for: "loading tensor '\(name)'")
    }

    /// Throws `badFile` naming the first tensor under `prefix` that was never read; `ignoring`
    /// lists names (relative to `prefix`) that are not parameters. `model` names the
    /// component in the message ("dVAE", "CLIP", ...).
    func rejectUnused(prefix: String, model: String, ignoring: Set<String> = []) throws {
        let unused = store.names.first {
            $0.hasPrefix(prefix) && !used.contains($0) && !ignoring.contains(String($0.dropFirst(prefix.count)))
        }
        if let name = unused {
            throw DalleError.badFile("unexpected tensor '\(name)': the file does not match the \(model) configuration in its metadata")
        }
    }
}
