/// Images generated from one prompt, with the image tokens they were decoded from.
public struct GeneratedImages: Sendable {
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
    /// (skipped when `decodeImages` is false). `tokenProgress` gets one step per generated
    /// image token, `decodeProgress` one per decoded image; either may cancel, as may `cancel()`.
    public func generate(prompt: String, options: GenerationOptions, decodeImages: Bool = true,
                         tokenProgress: ProgressHandler? = nil, decodeProgress: ProgressHandler? = nil) throws -> GeneratedImages {
        cancellation.reset()
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
        let text = try generator.encodePrompt(prompt)
        let tokens = try ImageTokenGenerator.generate(generator.predictor, text: text.ids, options: options, pool: pool,
                                                      progress: tokenProgress, cancellation: cancellation)
        var pixels: [UInt8] = []
        if let imageTokenizer {
            pixels = try decodeRGB8(tokens, count: options.count, with: imageTokenizer, progress: decodeProgress)
        }
        return GeneratedImages(count: options.count, gridSize: grid, tokens: tokens, imageSize: imageTokenizer?.imageSize ?? 0, pixels: pixels,
                               promptTokenCount: text.used, truncatedTokenCount: text.truncated,
                               generatedTokenCount: grid * (grid - options.primeRows), seed: options.seed)
    }
}
