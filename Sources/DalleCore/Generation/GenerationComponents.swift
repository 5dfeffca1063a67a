/// What generation needs from a model bundle: the transformer, and the prompt's tokenizer
/// (with the transformer's text length and padding conventions).
struct GenerationComponents {
    let predictor: any ImageTokenPredictor
    let encodePrompt: (String) throws -> PromptTokens
}

extension DalleModel {
    /// The transformer and tokenizer, or an error saying which is missing.
    func requireGenerator() throws -> GenerationComponents {
        throw DalleError.unsupported("this model has no transformer component (it holds: \(components)); generate needs one")
    }
}

extension DalleModel {
    /// Rows (= columns) of the image-token grid the transformer generates.
    public func generationGridSize() throws -> Int {
        try requireGenerator().predictor.imageGridSize
    }
}
