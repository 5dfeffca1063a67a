/// State of an incremental decode: per layer, the rotated keys and values of every
/// position fed so far and, with shift_tokens, the normalised inputs the token shift
/// reads from earlier positions. Made empty by `DalleTransformer.makeCache(batch:)`;
/// `prefill` sizes it for the model's whole sequence, so a step never reallocates.
public struct TransformerCache: Sendable {
    /// Sequences decoded together.
    public let batch: Int
    /// Positions fed so far (0 before `prefill`; at most the model's `seqLen`).
    public internal(set) var length: Int

    /// [depth][batch][heads][seqLen][dimHead].
    var keys: [Float]
    var values: [Float]
    /// [depth][batch][seqLen][dim/2]: first halves of the normalised attention (feed-forward)
    /// block inputs, empty without shift_tokens.
    var attentionShift: [Float]
    var feedForwardShift: [Float]

    init(batch: Int) {
        self.batch = batch
        self.length = 0
        (keys, values, attentionShift, feedForwardShift) = ([], [], [], [])
    }

    /// Allocates the storage for `c`'s whole sequence; `outOfMemory` when it is absurdly large.
    mutating func allocate(_ c: TransformerConfig) throws {
        let kv = try checkedCount([c.depth, batch, c.heads, c.seqLen, c.dimHead], "the key/value cache")
        let shift = c.shiftTokens ? try checkedCount([c.depth, batch, c.seqLen, c.dim / 2], "the token-shift cache") : 0
        keys = [Float](repeating: 0, count: kv)
        values = [Float](repeating: 0, count: kv)
        attentionShift = [Float](repeating: 0, count: shift)
        feedForwardShift = [Float](repeating: 0, count: shift)
    }
}

/// The element count of `dims`, or `outOfMemory` naming `what` when it overflows or exceeds
/// 2^33 floats (32 GiB).
func checkedCount(_ dims: [Int], _ what: String) throws -> Int {
    guard let n = Tensor.elementCount(dims), n <= 1 << 33 else {
        throw DalleError.outOfMemory("\(what) would need \(dims.map(String.init).joined(separator: "×")) floats")
    }
    return n
}
