/// State of an incremental decode: per layer, the rotated keys and values of every
/// position fed so far and, with shift_tokens, the normalised inputs the token shift
/// reads from earlier positions. Made by `DalleTransformer.makeCache(batch:)`; sized
/// for the model's whole sequence, so a step never reallocates.
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

    init(config c: TransformerConfig, batch: Int) {
        self.batch = batch
        self.length = 0
        let kv = c.depth * batch * c.heads * c.seqLen * c.dimHead
        keys = [Float](repeating: 0, count: kv)
        values = [Float](repeating: 0, count: kv)
        let shift = c.shiftTokens ? c.depth * batch * c.seqLen * (c.dim / 2) : 0
        attentionShift = [Float](repeating: 0, count: shift)
        feedForwardShift = [Float](repeating: 0, count: shift)
    }
}
