/// `nn.Embedding` (and any table read by rows, such as learned positions): rows of a
/// [count, width] weight in its stored precision, widened exactly as they are read.
struct Embedding: Sendable {
    let table: Weight
    var count: Int { table.shape[0] }
    var width: Int { table.shape[1] }

    init(_ table: Weight) { self.table = table }

    /// Reads `name` of shape [count, width].
    init(_ name: String, count: Int, width: Int, loader: StrictWeightLoader) throws {
        table = try loader.weight(name, shape: [count, width])
    }

    /// out[0..<width] = row `index` (the caller checks 0 ≤ index < count).
    @inline(__always)
    func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        table.decode(from: index * width, count: width, into: out)
    }

    /// out[0..<width] += row `index`.
    @inline(__always)
    func addRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let base = index * width
        for d in 0..<width { out[d] += table.element(base + d) }
    }
}
