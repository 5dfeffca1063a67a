import CDalle
import DalleCore

/// Borrowed views of `count` C images of any size (3 or 4 channels), checked field by field; errors
/// name image i `name(i)`.
func clipImageViews(_ images: UnsafePointer<dalle_image>?, _ count: Int,
                    name: (Int) -> String = { "images[\($0)]" }) throws -> [ImageView] {
    guard count <= Int(DALLE_MAX_BATCH) else {
        throw DalleError.invalidArgument("n_images is \(count); at most DALLE_MAX_BATCH (\(DALLE_MAX_BATCH)) per call")
    }
    guard count > 0 else { throw DalleError.invalidArgument("n_images is 0; give at least one image") }
    guard let images else { throw DalleError.invalidArgument("images is NULL but n_images is \(count)") }
    return try (0..<count).map { i in
        let image = images[i]
        guard image.channels == 3 || image.channels == 4 else {
            throw DalleError.invalidArgument("\(name(i)).channels is \(image.channels); expected 3 (RGB) or 4 (RGBA)")
        }
        guard image.width > 0, image.height > 0, image.width <= 1 << 15, image.height <= 1 << 15 else {
            throw DalleError.invalidArgument("\(name(i)) is \(image.width)x\(image.height); sides must be 1 ... 32768")
        }
        guard let data = image.data else { throw DalleError.invalidArgument("\(name(i)).data is NULL") }
        let bytes = Int(image.width) * Int(image.height) * Int(image.channels)  // bounded by the checks above
        return ImageView(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                         pixels: UnsafeBufferPointer(start: data, count: bytes))
    }
}

/// A NUL-terminated UTF-8 prompt, or an error naming what is wrong with it.
func clipPrompt(_ prompt: UnsafePointer<CChar>?) throws -> String {
    guard let prompt else { throw DalleError.invalidArgument("prompt is NULL") }
    guard let text = String(validatingCString: prompt) else { throw DalleError.invalidArgument("prompt is not valid UTF-8") }
    guard !text.isEmpty else { throw DalleError.invalidArgument("prompt is empty; CLIP compares images with a text") }
    return text
}

/// Copies an [N, D] embedding tensor into the caller's `capacity` floats (D must equal `size`).
func copyEmbeddings(_ t: Tensor, into out: UnsafeMutablePointer<Float>?, size: UInt32, _ name: String) throws {
    guard let out else { throw DalleError.invalidArgument("\(name) is NULL") }
    let d = t.shape[1]
    guard Int(size) == d else {
        throw DalleError.invalidArgument("embedding_size is \(size); this model's CLIP embeddings have \(d) values (dalle_clip_embedding_size)")
    }
    t.scalars.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
}

@_cdecl("dalle_clip_embedding_size")
public func dalle_clip_embedding_size(_ model: OpaquePointer?, _ outSize: UnsafeMutablePointer<UInt32>?) -> dalle_status {
    boundary("dalle_clip_embedding_size") {
        guard let outSize else { throw DalleError.invalidArgument("out_size is NULL") }
        outSize.pointee = 0
        let m = try Handles.resolve(model, .model, as: ModelBox.self, name: "model").model
        outSize.pointee = UInt32(clamping: try m.requireCLIP().config.embedDim)
    }
}

@_cdecl("dalle_clip_encode_text")
public func dalle_clip_encode_text(_ ctx: OpaquePointer?, _ prompt: UnsafePointer<CChar>?,
                                   _ outEmbedding: UnsafeMutablePointer<Float>?, _ embeddingSize: UInt32) -> dalle_status {
    withContext("dalle_clip_encode_text", ctx) { box in
        let text = try clipPrompt(prompt)
        try copyEmbeddings(try box.session.clipTextEmbeddings([text]), into: outEmbedding, size: embeddingSize, "out_embedding")
    }
}

@_cdecl("dalle_clip_encode_images")
public func dalle_clip_encode_images(_ ctx: OpaquePointer?, _ images: UnsafePointer<dalle_image>?, _ nImages: UInt32,
                                     _ outEmbeddings: UnsafeMutablePointer<Float>?, _ embeddingSize: UInt32) -> dalle_status {
    withContext("dalle_clip_encode_images", ctx) { box in
        let views = try clipImageViews(images, Int(nImages))
        guard outEmbeddings != nil else { throw DalleError.invalidArgument("out_embeddings is NULL") }
        let embeddings = try box.session.clipImageEmbeddings(views, progress: box.progressHandler(Int32(DALLE_PHASE_CLIP)))
        try copyEmbeddings(embeddings, into: outEmbeddings, size: embeddingSize, "out_embeddings")
    }
}

@_cdecl("dalle_rerank")
public func dalle_rerank(_ ctx: OpaquePointer?, _ prompt: UnsafePointer<CChar>?, _ images: UnsafePointer<dalle_image>?,
                         _ nImages: UInt32, _ outScores: UnsafeMutablePointer<Float>?,
                         _ outOrder: UnsafeMutablePointer<UInt32>?) -> dalle_status {
    withContext("dalle_rerank", ctx) { box in
        guard outScores != nil || outOrder != nil else {
            throw DalleError.invalidArgument("out_scores and out_order are both NULL; ask for at least one")
        }
        let text = try clipPrompt(prompt)
        let views = try clipImageViews(images, Int(nImages))
        let result = try box.session.rerank(prompt: text, images: views, progress: box.progressHandler(Int32(DALLE_PHASE_CLIP)))
        if let outScores { for (i, s) in result.scores.enumerated() { outScores[i] = s } }
        if let outOrder { for (k, i) in result.order.enumerated() { outOrder[k] = UInt32(i) } }
    }
}
