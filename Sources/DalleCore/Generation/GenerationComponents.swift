/// What generation needs from a model bundle: the transformer, and the prompt's tokenizer
/// (with the transformer's text length and padding conventions).
struct GenerationComponents {
    let predictor: any ImageTokenPredictor
    let encodePrompt: (String) throws -> PromptTokens
}

extension DalleModel {
    /// The transformer and tokenizer, or an error saying which is missing.
    func requireGenerator() throws -> GenerationComponents {
        guard let transformer else {
            throw DalleError.unsupported("this model has no transformer component (it holds: \(components)); generate needs one")
        }
        guard let tokenizer else {
            throw DalleError.unsupported("this model has no tokenizer component (it holds: \(components)); generate needs one for the prompt")
        }
        let length = transformer.config.textSeqLen
        return GenerationComponents(predictor: transformer) { prompt in
            let text = try tokenizer.tokenizeDALLE(prompt, textLength: length)
            let all = text.truncated ? tokenizer.encode(prompt).count : text.count
            return PromptTokens(ids: text.ids, used: text.count, truncated: all - text.count)
        }
    }

    /// Rows (= columns) of the image-token grid the transformer generates.
    public func generationGridSize() throws -> Int {
        try requireGenerator().predictor.imageGridSize
    }
}

extension DalleTransformer: ImageTokenPredictor {
    public var textLength: Int { config.textSeqLen }
    public var imageGridSize: Int { config.imageFmapSize }
    public var imageVocabSize: Int { config.numImageTokens }
    /// `prefill` and `step` return the image-token logits only.
    public var imageLogitOffset: Int { 0 }

    public var stepWeightBytes: Int {
        attentions.reduce(0) { $0 + $1.qkv.byteCount + $1.out.byteCount }
            + feedForwards.reduce(0) { $0 + $1.up.byteCount + $1.down.byteCount } + imageLogits.byteCount
    }

    public func workingBytes(batch: Int) -> Int {
        let c = config, f = MemoryLayout<Float>.size
        let cache = WorkingMemory.product(2, c.depth, batch, c.heads, c.seqLen, c.dimHead, f)
        let shift = c.shiftTokens ? WorkingMemory.product(2, c.depth, batch, c.seqLen, c.dim / 2, f) : 0
        // `run`'s buffers per position (x, normed, block, qkv, attended, up, gated), the packed
        // GEMM input and the logits, with room to spare.
        let perPosition = WorkingMemory.sum(4 * c.dim, 5 * c.innerDim, 4 * c.ffHidden, c.totalTokens)
        return WorkingMemory.sum(cache, shift, WorkingMemory.product(2, batch, c.seqLen, perPosition, f))
    }
}
