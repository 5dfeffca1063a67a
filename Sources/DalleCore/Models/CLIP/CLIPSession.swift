/// CLIP on a session: prompts through the bundle's tokenizer, images of any size through
/// CLIP's preprocessing, and reranking.
extension DalleSession {
    /// Images embedded per step of a batch (one progress step each).
    static let clipImagesPerStep = 8

    /// `clip.tokenize(prompt)` with the bundle's tokenizer (truncated to the context length).
    /// Throws for an empty prompt or a bundle without CLIP or tokenizer.
    public func clipTokens(_ prompt: String) throws -> [Int32] {
        let clip = try model.requireCLIP()
        guard !prompt.isEmpty else { throw DalleError.invalidArgument("the prompt is empty; CLIP compares images with a text") }
        guard let tokenizer = model.tokenizer else {
            throw DalleError.unsupported("this model has no tokenizer component (it holds: \(model.components)); CLIP needs one to read prompts")
        }
        guard tokenizer.vocabularySize == clip.config.vocabSize else {
            throw DalleError.badFile("the tokenizer has \(tokenizer.vocabularySize) ids but CLIP's vocabulary has \(clip.config.vocabSize)")
        }
        return try tokenizer.tokenizeCLIP(prompt, contextLength: clip.config.contextLength).ids
    }

    /// CLIP text embeddings [N, embed_dim] of `prompts` (not normalised, as `encode_text`).
    public func clipTextEmbeddings(_ prompts: [String]) throws -> Tensor {
        cancellation.reset()
        let clip = try model.requireCLIP()
        let tokens = try prompts.map { try clipTokens($0) }
        return try clip.encodeText(tokens, pool: pool)
    }

    /// CLIP image embeddings [N, embed_dim] (not normalised, as `encode_image`) of RGB or
    /// RGBA images of any size, each resized and centre-cropped as CLIP's preprocessing does.
    /// One progress step per batch of `clipImagesPerStep` images.
    public func clipImageEmbeddings(_ images: [ImageView], progress: ProgressHandler? = nil) throws -> Tensor {
        cancellation.reset()
        return try embedImages(images, progress: progress)
    }

    /// Scores (logit_scale · cosine similarity, the reference's `logits_per_image`) of each
    /// image against `prompt`, and the image indices best first (ties in input order).
    public func rerank(prompt: String, images: [ImageView], progress: ProgressHandler? = nil) throws -> (scores: [Float], order: [Int]) {
        cancellation.reset()
        let scores = try clipScores(tokens: try clipTokens(prompt), images: images, progress: progress)
        return (scores, DalleSession.bestFirst(scores))
    }

    /// Indices of `scores`, highest first (ties in input order).
    static func bestFirst(_ scores: [Float]) -> [Int] {
        scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    }

    /// `rerank`'s scores of images against a prompt already read by `clipTokens` (cancellation not reset).
    func clipScores(tokens: [Int32], images: [ImageView], progress: ProgressHandler?) throws -> [Float] {
        let clip = try model.requireCLIP()
        guard !images.isEmpty else { throw DalleError.invalidArgument("no images to rerank") }
        let text = try clip.encodeText([tokens], pool: pool)
        let embeddings = try embedImages(images, progress: progress)
        let scores = clip.logits(images: embeddings, texts: text).scalars
        return scores
    }

    private func embedImages(_ images: [ImageView], progress: ProgressHandler?) throws -> Tensor {
        let clip = try model.requireCLIP()
        guard images.count <= DalleSession.maxBatch else {
            throw DalleError.invalidArgument("\(images.count) images in one call; at most \(DalleSession.maxBatch)")
        }
        let size = clip.config.imageResolution, step = DalleSession.clipImagesPerStep
        try WorkingMemory.require(WorkingMemory.product(images.count, clip.config.embedDim, 8), for: "\(images.count) CLIP embeddings")
        let steps = (images.count + step - 1) / step
        let reporter = StepReporter(total: steps, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var scalars: [Float] = []
        for s in 0..<steps {
            let batch = Array(images[(s * step)..<min((s + 1) * step, images.count)])
            let first = s * step
            let pixels = try CLIPPreprocess.tensor(from: batch, size: size, firstIndex: first, cropRounding: clip.cropRounding)
            scalars += try clip.encodeImages(pixels, pool: pool).scalars
            try reporter.report(s + 1)
        }
        return Tensor(uncheckedShape: [images.count, clip.config.embedDim], scalars: scalars)
    }
}

extension Array where Element == RGBImage {
    /// Borrowed views of every image, for the length of `body`.
    public func withViews<T>(_ body: ([ImageView]) throws -> T) rethrows -> T {
        func go(_ i: Int, _ views: [ImageView]) throws -> T {
            if i == count { return try body(views) }
            return try self[i].withView { try go(i + 1, views + [$0]) }
        }
        return try go(0, [])
    }
}
