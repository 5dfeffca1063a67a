import DalleCore
import DalleImageIO

let rerankUsage = """
    rerank [--model M] --prompt TEXT IMAGE.png ...
      scores PNGs of any size against a caption with the model's CLIP; prints "score path"
      lines, best first (score = CLIP's logit: exp(logit_scale) * cosine similarity)

    """

/// `dalle rerank`: one "score path" line per image, best first.
func rerank(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "prompt", "threads"], maxPositional: DalleSession.maxBatch)
    let prompt = try arguments.required("prompt")
    guard !arguments.positional.isEmpty else { throw UsageError("rerank needs at least one IMAGE.png") }
    let session = try DalleSession(model: try DalleModel(path: try arguments.modelPath()), threads: try arguments.threads())
    let images = try arguments.positional.map { path -> RGBImage in
        do { return try PNG.read(path: path) } catch DalleError.badFile(let message) { throw RunError("cannot read the image \(message)") }
    }
    let result = try images.withViews { try session.rerank(prompt: prompt, images: $0) }
    for i in result.order {
        print("\(result.scores[i]) \(arguments.positional[i])")
    }
}
