import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

@_cdecl("dalle_generate_default_params")
public func dalle_generate_default_params() -> dalle_generate_params {
    var params = dalle_generate_params()
    params.struct_size = UInt32(MemoryLayout<dalle_generate_params>.size)
    params.count = 1
    params.seed = DALLE_SEED_RANDOM
    params.temperature = 1
    params.top_k = 0
    params.top_p = 1
    params.cond_scale = 1
    params.likelihood_weight = DALLE_LIKELIHOOD_WEIGHT_MODEL
    return params
}

/// Generates images (and their image tokens) for a prompt; outputs are allocated for the caller.
@_cdecl("dalle_generate")
public func dalle_generate(_ ctx: OpaquePointer?, _ prompt: UnsafePointer<CChar>?, _ params: UnsafePointer<dalle_generate_params>?,
                           _ outImages: UnsafeMutablePointer<dalle_image_batch>?, _ outTokens: UnsafeMutablePointer<dalle_tokens>?,
                           _ outInfo: UnsafeMutablePointer<dalle_generate_info>?) -> dalle_status {
    withContext("dalle_generate", ctx) { box in
        outImages?.pointee = dalle_image_batch()
        outTokens?.pointee = dalle_tokens()
        let infoSize = try outInfo.map { try checkedInfoSize($0) }
        guard outImages != nil || outTokens != nil else {
            throw DalleError.invalidArgument("out_images and out_tokens are both NULL; ask for at least one")
        }
        guard let prompt else { throw DalleError.invalidArgument("prompt is NULL (pass \"\" for an unconditional image)") }
        guard let text = String(validatingCString: prompt) else {
            throw DalleError.invalidArgument("prompt is not valid UTF-8")
        }
        // Callers built before keep_best, out_scores and out_log_likelihoods were appended pass the shorter struct;
        // those built before likelihood_weight rank by CLIP alone, as they did.
        var defaults = dalle_generate_default_params()
        if params != nil { defaults.likelihood_weight = 0 }
        let p = try readParams(params, defaults: defaults, name: "dalle_generate_params",
                               minimumSize: MemoryLayout<dalle_generate_params>.offset(of: \.keep_best) ?? 0)
        let likelihoodWeight = box.session.model.likelihoodWeight(for: p.likelihood_weight)
        guard p.count >= 1, p.count <= UInt32(DALLE_MAX_GENERATE) else {
            throw DalleError.invalidArgument("count is \(p.count); dalle_generate makes 1 ... DALLE_MAX_GENERATE (\(DALLE_MAX_GENERATE)) images per call")
        }
        let primeRows = Int(p.prime_rows)
        var prime: [Int32] = []
        if primeRows > 0 {
            guard let tokens = p.prime_tokens else { throw DalleError.invalidArgument("prime_tokens is NULL but prime_rows is \(primeRows)") }
            let grid = try box.session.model.generationGridSize()
            guard primeRows < grid else {
                throw DalleError.invalidArgument("prime_rows is \(primeRows); it must be in 0 ..< \(grid) (the token grid has \(grid) rows)")
            }
            prime = Array(UnsafeBufferPointer(start: tokens, count: primeRows * grid))
        }
        var options = GenerationOptions(
            count: Int(p.count), seed: p.seed == DALLE_SEED_RANDOM ? box.session.seed : p.seed,
            sampling: SamplingOptions(temperature: p.temperature, topK: Int(p.top_k), topP: p.top_p),
            condScale: p.cond_scale, primeTokens: prime, primeRows: primeRows, keepBest: Int(p.keep_best),
            likelihoodWeight: likelihoodWeight)
        // unCLIP's settings: 0 keeps the default; the pipeline checks the ranges.
        func nonZero(_ steps: UInt32) -> Int? { steps == 0 ? nil : Int(steps) }
        func nonZero(_ scale: Float) -> Float? { scale == 0 ? nil : scale }
        options.unclip.priorSteps = nonZero(p.prior_steps)
        options.unclip.decoderSteps = nonZero(p.decoder_steps)
        options.unclip.superResolutionSteps = nonZero(p.super_res_steps)
        options.unclip.priorGuidance = nonZero(p.prior_guidance)
        options.unclip.decoderGuidance = nonZero(p.decoder_guidance)
        // Words the model was never shown: warned about before the work starts, counted in out_info.
        let vocabulary = box.session.model.promptVocabulary
        let unknownWords = vocabulary?.unknownWords(in: text) ?? []
        if let warning = vocabulary?.warning(for: text, unknown: unknownWords) {
            Log.write(dalle_log_level(DALLE_LOG_WARN), "dalle_generate: " + warning)
        }
        options.unclip.noise = try callerNoise(p)
        options.unclip.image = try p.init_image.map { try callerRGBImage($0, name: "init_image") }
        if let end = p.interpolate_to_image {
            guard p.interpolate_to == nil else {
                throw DalleError.invalidArgument("interpolate_to and interpolate_to_image are both set; interpolate to a prompt or to an image")
            }
            options.unclip.interpolationEnd = .image(try callerRGBImage(end, name: "interpolate_to_image"))
        } else if let end = p.interpolate_to {
            guard let text = String(validatingCString: end) else { throw DalleError.invalidArgument("interpolate_to is not valid UTF-8") }
            options.unclip.interpolationEnd = .prompt(text)
        }
        let (callback, userData) = p.progress != nil ? (p.progress, p.progress_user_data) : (box.progress, box.progressUserData)
        let result = try box.session.generate(
            prompt: text, options: options, decodeImages: outImages != nil,
            tokenProgress: progressHandler(callback, userData, phase: Int32(DALLE_PHASE_GENERATE)),
            decodeProgress: progressHandler(callback, userData, phase: Int32(DALLE_PHASE_DECODE)),
            rerankProgress: progressHandler(callback, userData, phase: Int32(DALLE_PHASE_CLIP)))
        if result.truncatedTokenCount > 0 {
            Log.write(dalle_log_level(DALLE_LOG_WARN), "dalle_generate: the prompt is \(result.promptTokenCount + result.truncatedTokenCount) tokens; the last \(result.truncatedTokenCount) past the model's text length were dropped")
        }

        // Allocate every output before publishing any, so a failure leaves all of them zeroed.
        var tokens = dalle_tokens()
        if outTokens != nil, result.gridSize > 0 {
            let bytes = result.tokens.count * MemoryLayout<Int32>.stride
            let data = try CallerMemory.allocate(bytes: bytes, .tokens)
            result.tokens.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
            tokens = dalle_tokens(count: UInt32(result.count), rows: UInt32(result.gridSize), cols: UInt32(result.gridSize),
                                  data: data.assumingMemoryBound(to: Int32.self))
        }
        if let outImages {
            do {
                outImages.pointee = try imageBatch(result.pixels, count: result.count, size: result.imageSize)
            } catch {
                if let data = tokens.data { try? CallerMemory.free(UnsafeMutableRawPointer(data), .tokens) }
                throw error
            }
        }
        outTokens?.pointee = tokens
        if let scores = p.out_scores {
            for (i, score) in result.scores.enumerated() { scores[i] = score }
        }
        if let logLikelihoods = p.out_log_likelihoods {
            for (i, value) in result.logLikelihoods.enumerated() { logLikelihoods[i] = value }
        }
        if let outInfo, let infoSize {
            var info = dalle_generate_info()
            info.struct_size = UInt32(infoSize)
            info.prompt_tokens = UInt32(clamping: result.promptTokenCount)
            info.truncated_tokens = UInt32(clamping: result.truncatedTokenCount)
            info.generated_tokens = UInt32(clamping: result.generatedTokenCount)
            info.seed = result.seed
            info.unknown_words = UInt32(clamping: unknownWords.count)
            withUnsafeBytes(of: &info) { UnsafeMutableRawPointer(outInfo).copyMemory(from: $0.baseAddress!, byteCount: infoSize) }
        }
    }
}

/// The noise tensors of `noise_path` or `noise_data` (none when both are unset); their shapes are
/// checked against the run by the pipeline.
private func callerNoise(_ p: dalle_generate_params) throws -> [String: Tensor] {
    let file: SafetensorsFile
    switch (p.noise_path, p.noise_data) {
    case (nil, nil):
        guard p.noise_size == 0 else { throw DalleError.invalidArgument("noise_size is \(p.noise_size) but noise_data is NULL") }
        return [:]
    case (.some, .some):
        throw DalleError.invalidArgument("noise_path and noise_data are both set; give the noise one way")
    case (let path?, nil):
        guard let path = String(validatingCString: path) else { throw DalleError.invalidArgument("noise_path is not valid UTF-8") }
        file = try SafetensorsFile(path: path)
    case (nil, let data?):
        guard p.noise_size > 0, p.noise_size <= UInt64(Int.max) else {
            throw DalleError.invalidArgument("noise_size is \(p.noise_size); give the byte count of the safetensors data at noise_data")
        }
        file = try SafetensorsFile(bytes: UnsafeRawBufferPointer(start: data, count: Int(p.noise_size)))
    }
    return try UnCLIPNoise.tensors(in: file)
}

/// A copy of a borrowed C image as RGB (alpha dropped), checked as CLIP's inputs are.
private func callerRGBImage(_ image: UnsafePointer<dalle_image>, name: String) throws -> RGBImage {
    let view = try clipImageViews(image, 1, name: { _ in name })[0]
    guard view.width * view.height <= 1 << 26 else {
        throw DalleError.invalidArgument("\(name) is \(view.width)x\(view.height); at most 2^26 pixels")
    }
    var rgb = [UInt8](repeating: 0, count: view.width * view.height * 3)
    for p in 0..<(view.width * view.height) {
        for c in 0..<3 { rgb[p * 3 + c] = view.pixels[p * view.channels + c] }
    }
    return try RGBImage(width: view.width, height: view.height, pixels: rgb)
}

/// The bytes of `*info` the caller asked for (its struct_size, at most ours).
private func checkedInfoSize(_ info: UnsafeMutablePointer<dalle_generate_info>) throws -> Int {
    let size = Int(UnsafeRawPointer(info).load(as: UInt32.self))
    guard size >= MemoryLayout<UInt32>.size else {
        throw DalleError.invalidArgument("out_info->struct_size is \(size); set it to sizeof(dalle_generate_info) (\(MemoryLayout<dalle_generate_info>.size))")
    }
    return min(size, MemoryLayout<dalle_generate_info>.size)
}

/// `count` RGB8 images of size x size held image after image in `pixels`, in one caller
/// allocation: the image headers, then the pixels (freed by dalle_image_batch_free).
func imageBatch(_ pixels: [UInt8], count: Int, size: Int) throws -> dalle_image_batch {
    guard count > 0 else { return dalle_image_batch() }
    let imageBytes = size * size * 3
    let headerBytes = count * MemoryLayout<dalle_image>.stride
    let block = try CallerMemory.allocate(bytes: headerBytes + pixels.count, .images)
    let headers = block.bindMemory(to: dalle_image.self, capacity: count)
    let pixelBase = (block + headerBytes).bindMemory(to: UInt8.self, capacity: pixels.count)
    pixels.withUnsafeBufferPointer { pixelBase.update(from: $0.baseAddress!, count: $0.count) }
    for n in 0..<count {
        headers[n] = dalle_image(width: UInt32(size), height: UInt32(size), channels: 3, data: pixelBase + n * imageBytes)
    }
    return dalle_image_batch(count: UInt32(count), images: headers)
}

extension DalleModel {
    /// A C params struct's likelihood_weight: DALLE_LIKELIHOOD_WEIGHT_MODEL means the weight this
    /// model was tuned for; any other value is the caller's (validated where it is used).
    func likelihoodWeight(for requested: Float) -> Float {
        requested == DALLE_LIKELIHOOD_WEIGHT_MODEL ? likelihoodWeight : requested
    }
}
