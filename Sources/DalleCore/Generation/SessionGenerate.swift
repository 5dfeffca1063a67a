/// Images generated from one prompt, with the image tokens they were decoded from.
public struct GeneratedImages: Sendable {
    /// Images returned: the candidates generated, or the `keepBest` kept of them.
    public let count: Int
    /// Token grids are gridSize x gridSize; `tokens` holds them grid after grid, row-major.
    public let gridSize: Int
    public let tokens: [Int32]
    /// RGB8 images of imageSize x imageSize, interleaved, image after image (empty when
    /// decoding was not asked for).
    public let imageSize: Int
    public let pixels: [UInt8]
    /// Text tokens of the prompt that were used, and those dropped past the text length.
    public let promptTokenCount: Int
    public let truncatedTokenCount: Int
    /// Image tokens generated per image (the grid minus the primed rows).
    public let generatedTokenCount: Int
    /// The seed of the draws.
    public let seed: UInt64
    /// CLIP scores of the kept images against the prompt, in rank order, when `keepBest` > 0
    /// reranked the candidates (then images and tokens are in this order); empty otherwise.
    public let scores: [Float]
    /// Per returned image (in the same order), the transformer's mean log-probability of its
    /// generated tokens (see `SampledGrids.logLikelihoods`).
    public let logLikelihoods: [Float]
}

/// The prompt as the transformer reads it: `textLength` ids, 0-padded.
public struct PromptTokens: Sendable, Equatable {
    public let ids: [Int32]
    /// Tokens kept (the rest of `ids` is padding) and tokens dropped past the text length.
    public let used: Int
    public let truncated: Int
}

extension DalleSession {
    /// Generates `options.count` images for `prompt` ("" = unconditional): tokenize, sample
    /// the image tokens with the transformer, then decode them with the image tokenizer
    /// (skipped when `decodeImages` is false). With `options.keepBest` > 0, CLIP then scores
    /// the candidates against the prompt and only the best `keepBest` are returned, best first
    /// (ranked by CLIP score + `options.likelihoodWeight` x log-likelihood).
    /// `tokenProgress` gets one step per generated image token, `decodeProgress` one per
    /// decoded image, `rerankProgress` one per CLIP batch; any may cancel, as may `cancel()`.
    public func generate(prompt: String, options: GenerationOptions, decodeImages: Bool = true,
                         tokenProgress: ProgressHandler? = nil, decodeProgress: ProgressHandler? = nil,
                         rerankProgress: ProgressHandler? = nil) throws -> GeneratedImages {
        cancellation.reset()
        return try generateCandidates(prompt: prompt, options: options, decodeImages: decodeImages, tokenProgress: tokenProgress,
                                      decodeProgress: decodeProgress, rerankProgress: rerankProgress)
    }

    /// `generate` without clearing the cancellation flag first, for calls made of several generations.
    func generateCandidates(prompt: String, options: GenerationOptions, decodeImages: Bool = true,
                            tokenProgress: ProgressHandler? = nil, decodeProgress: ProgressHandler? = nil,
                            rerankProgress: ProgressHandler? = nil) throws -> GeneratedImages {
        if let unclip = model.unclip {
            return try generateUnCLIP(unclip, prompt: prompt, options: options, decodeImages: decodeImages, progress: tokenProgress,
                                      rerankProgress: rerankProgress)
        }
        let u = options.unclip
        guard u.noise.isEmpty, u.image == nil, u.interpolationEnd == nil else {
            throw DalleError.invalidArgument("caller-given noise, input images and interpolation apply to unCLIP (DALL-E 2) models only; this model holds: \(model.components)")
        }
        let generator = try model.requireGenerator()
        let grid = generator.predictor.imageGridSize
        var imageTokenizer: ImageTokenizer? = nil
        if decodeImages {
            guard let decoder = model.imageTokenizer else {
                throw DalleError.unsupported("this model has no dvae component (it holds: \(model.components)); decoding generated images needs one")
            }
            guard decoder.gridSize == grid, decoder.vocabSize >= generator.predictor.imageVocabSize else {
                throw DalleError.badFile("the transformer makes \(grid)x\(grid) grids of \(generator.predictor.imageVocabSize) image tokens but the dvae decodes \(decoder.gridSize)x\(decoder.gridSize) grids of \(decoder.vocabSize)")
            }
            imageTokenizer = decoder
        }
        let clipPrompt = try rerankPrompt(prompt, options: options, decodeImages: decodeImages)
        let text = try generator.encodePrompt(prompt)
        let sampled = try ImageTokenGenerator.generate(generator.predictor, text: text.ids, options: options, pool: pool,
                                                       progress: tokenProgress, cancellation: cancellation)
        var tokens = sampled.tokens, logLikelihoods = sampled.logLikelihoods
        var pixels: [UInt8] = []
        var count = options.count
        var scores: [Float] = []
        if let imageTokenizer {
            pixels = try decodeRGB8(tokens, count: count, with: imageTokenizer, progress: decodeProgress)
            if let clipPrompt {
                let size = imageTokenizer.imageSize, imageBytes = size * size * 3, imageLength = grid * grid
                let clipScore = try pixels.withUnsafeBufferPointer { all in
                    let views = (0..<count).map {
                        ImageView(width: size, height: size, channels: 3, pixels: UnsafeBufferPointer(rebasing: all[($0 * imageBytes)..<(($0 + 1) * imageBytes)]))
                    }
                    return try clipScores(tokens: clipPrompt, images: views, progress: rerankProgress)
                }
                let ranking = clipScore.indices.map { clipScore[$0] + options.likelihoodWeight * logLikelihoods[$0] }
                let kept = DalleSession.bestFirst(ranking).prefix(options.keepBest)
                scores = kept.map { clipScore[$0] }
                tokens = kept.flatMap { tokens[($0 * imageLength)..<(($0 + 1) * imageLength)] }
                pixels = kept.flatMap { pixels[($0 * imageBytes)..<(($0 + 1) * imageBytes)] }
                logLikelihoods = kept.map { logLikelihoods[$0] }
                count = kept.count
            }
        }
        return GeneratedImages(count: count, gridSize: grid, tokens: tokens, imageSize: imageTokenizer?.imageSize ?? 0, pixels: pixels,
                               promptTokenCount: text.used, truncatedTokenCount: text.truncated,
                               generatedTokenCount: grid * (grid - options.primeRows), seed: options.seed, scores: scores,
                               logLikelihoods: logLikelihoods)
    }

    /// CLIP's tokens of `prompt` when `options.keepBest` asks for reranking (nil when it does
    /// not), checked before anything is generated.
    private func rerankPrompt(_ prompt: String, options: GenerationOptions, decodeImages: Bool) throws -> [Int32]? {
        guard options.keepBest != 0 else { return nil }
        guard options.keepBest > 0, options.keepBest <= options.count else {
            throw DalleError.invalidArgument("keep_best is \(options.keepBest); it must be in 0 ... count (\(options.count)), 0 keeping every image")
        }
        guard model.clip != nil else {
            let hint = model.unclip != nil ? " (an unCLIP bundle has one when it holds an image encoder: tools/convert_unclip.py --image-encoder)" : ""
            throw DalleError.unsupported("this model has no clip component (it holds: \(model.components)); keeping the best images by CLIP score needs one\(hint)")
        }
        guard decodeImages else { throw DalleError.invalidArgument("keep_best needs the images decoded: CLIP scores images, not tokens") }
        guard !prompt.isEmpty else { throw DalleError.invalidArgument("the prompt is empty; keep_best ranks images by CLIP against a prompt") }
        return try clipTokens(prompt)
    }
}

extension DalleSession {
    /// `generate` with DALL·E 2: `options.count` images through the unCLIP pipeline (`options.unclip`'s
    /// steps, guidance and noise; the noise not given drawn from `options.seed`), one progress step per
    /// denoising step of any stage: of the prompt; variations of `options.unclip.image` (prompt "");
    /// or, with `options.unclip.interpolationEnd`, the frames from the prompt (or image) to that end.
    /// `keepBest` reranks by the bundle's CLIP against the prompt. It makes no image tokens; priming
    /// and the transformer's sampling options do not apply.
    func generateUnCLIP(_ unclip: UnCLIPPipeline, prompt: String, options: GenerationOptions, decodeImages: Bool,
                        progress: ProgressHandler?, rerankProgress: ProgressHandler?) throws -> GeneratedImages {
        guard decodeImages else {
            throw DalleError.invalidArgument("an unCLIP model makes images, not image tokens: ask for the images")
        }
        guard options.primeRows == 0 else { throw DalleError.unsupported("priming is not supported for unCLIP models") }
        let clipPrompt = try rerankPrompt(prompt, options: options, decodeImages: decodeImages)
        var o = UnCLIPPipeline.Options()
        o.seed = options.seed
        let u = options.unclip
        o.priorSteps = u.priorSteps ?? o.priorSteps
        o.decoderSteps = u.decoderSteps ?? o.decoderSteps
        o.superResolutionSteps = u.superResolutionSteps ?? o.superResolutionSteps
        o.priorGuidance = u.priorGuidance ?? o.priorGuidance
        o.decoderGuidance = u.decoderGuidance ?? o.decoderGuidance
        for steps in [o.priorSteps, o.decoderSteps, o.superResolutionSteps] where !(1...1000).contains(steps) {
            throw DalleError.invalidArgument("unCLIP: \(steps) steps; each stage takes 1 ... 1000")
        }
        let fromImage = u.image != nil
        if u.image != nil, !prompt.isEmpty {
            throw DalleError.invalidArgument("an input image and a prompt: variations and image interpolations take the prompt \"\"")
        }
        let stages = fromImage ? [0, o.decoderSteps, o.superResolutionSteps] : [o.priorSteps, o.decoderSteps, o.superResolutionSteps]
        let reporter = StepReporter(total: stages.reduce(0, +), handler: progress, cancellation: cancellation)
        try reporter.report(0)
        let report: (Int, Int, Int) -> Bool = { stage, step, _ in (try? reporter.report(stages.prefix(stage).reduce(0, +) + step)) != nil }
        let images: Tensor
        switch (u.image, u.interpolationEnd) {
        case (nil, nil):
            images = try unclip.generate(prompts: Array(repeating: prompt, count: options.count), options: o, noise: u.noise, progress: report, pool: pool)
        case (let image?, nil):
            images = try image.withView { view in
                try unclip.vary(images: Array(repeating: view, count: options.count), options: o, noise: u.noise, progress: report, pool: pool)
            }
        case (nil, .prompt(let end)?):
            images = try unclip.interpolate(from: .prompt(prompt), to: .prompt(end), frames: options.count, options: o, noise: u.noise,
                                            progress: report, pool: pool)
        case (let start?, .image(let end)?):
            images = try start.withView { a in
                try end.withView { b in
                    try unclip.interpolate(from: .image(a), to: .image(b), frames: options.count, options: o, noise: u.noise, progress: report, pool: pool)
                }
            }
        case (nil, .image?), (.some, .prompt?):
            throw DalleError.invalidArgument("unCLIP interpolates from a prompt to a prompt or from an image to an image")
        }
        guard images.rank == 4, images.shape[2] == images.shape[3] else {
            throw DalleError.unsupported("this unCLIP bundle makes \(images.shape) images; dalle_generate returns square ones")
        }
        let size = images.shape[2], imageBytes = size * size * 3
        var pixels = [UInt8](repeating: 0, count: options.count * imageBytes)
        for n in 0..<options.count {
            try pixels.withUnsafeMutableBufferPointer { out in
                try ImageConversion.writeRGB8(images, image: n, into: UnsafeMutableBufferPointer(rebasing: out[(n * imageBytes)..<((n + 1) * imageBytes)]))
            }
        }
        var count = options.count, scores: [Float] = []
        if let clipPrompt {
            let clipScore = try pixels.withUnsafeBufferPointer { all in
                let views = (0..<count).map {
                    ImageView(width: size, height: size, channels: 3, pixels: UnsafeBufferPointer(rebasing: all[($0 * imageBytes)..<(($0 + 1) * imageBytes)]))
                }
                return try clipScores(tokens: clipPrompt, images: views, progress: rerankProgress)
            }
            let kept = DalleSession.bestFirst(clipScore).prefix(options.keepBest)
            scores = kept.map { clipScore[$0] }
            pixels = kept.flatMap { pixels[($0 * imageBytes)..<(($0 + 1) * imageBytes)] }
            count = kept.count
        }
        return GeneratedImages(count: count, gridSize: 0, tokens: [], imageSize: size, pixels: pixels,
                               promptTokenCount: 0, truncatedTokenCount: 0, generatedTokenCount: 0, seed: options.seed,
                               scores: scores, logLikelihoods: Array(repeating: 0, count: count))
    }
}
