/// DALL·E 2 text-to-image as diffusers' `UnCLIPPipeline` runs it, from one libdalle bundle
/// (tools/convert_unclip.py): prompts → CLIP BPE → text encoder → prior (guided) → text_proj →
/// decoder (guided on its noise channels) → clamp → antialiased bicubic to the super-resolution size →
/// super-resolution (`super_res_first` on every step but the last) → x·0.5 + 0.5 clamped to [0, 1].
/// Noise not given by the caller is drawn from `seed`, per stage, step and image (so an image does
/// not depend on the others in its batch, nor on the thread count).
public final class UnCLIPPipeline: @unchecked Sendable {
    public struct Options: Sendable, Equatable {
        public var priorSteps = 25, decoderSteps = 25, superResolutionSteps = 7
        public var priorGuidance: Float = 4, decoderGuidance: Float = 8
        public var seed: UInt64 = 0
        public init() {}
    }

    /// One end of an interpolation: a prompt or an image.
    public enum Endpoint {
        case prompt(String)
        case image(ImageView)
    }

    public let configuration: UnCLIPBundleConfiguration
    let tokenizer: Tokenizer
    let textEncoder: UnCLIPTextEncoder, textProjection: UnCLIPTextProjection
    /// nil in an image-variations bundle.
    let prior: PriorTransformer?
    let decoder: UnCLIPUNet, superResolutionFirst: UnCLIPUNet, superResolutionLast: UnCLIPUNet
    let schedulers: (prior: UnCLIPScheduler?, decoder: UnCLIPScheduler, superResolution: UnCLIPScheduler)
    /// The bundle's CLIP (its image encoder with the text encoder as text tower), when it has an
    /// image encoder: variations and image interpolations embed their images with it, and
    /// `keep_best` reranks with it.
    public let clip: CLIP?

    /// Loads every part of the bundle, strictly (`badFile` for a missing or extra tensor or a wrong
    /// shape; `unsupported` for options these ports lack). A text-to-image bundle has a prior, an
    /// image-variations one an image encoder; one converted with `--image-encoder` has both.
    public init(bundle: SafetensorsFile) throws {
        let m = bundle.metadata
        configuration = try UnCLIPBundleConfiguration(metadata: m)
        func json(_ part: String) throws -> String {
            guard let text = m["unclip.\(part).config"] else { throw DalleError.badFile("unCLIP metadata lacks 'unclip.\(part).config'") }
            return text
        }
        func unet(_ part: String) throws -> UnCLIPUNet {
            try UnCLIPUNet(configuration: try .init(json: try json(part), part: part), weights: bundle, prefix: "unclip.\(part).")
        }
        tokenizer = try Tokenizer(metadata: m, weights: bundle)
        textEncoder = try UnCLIPTextEncoder(configuration: try .init(json: try json("text_encoder")), weights: bundle)
        let parts = configuration.parts
        prior = parts.contains("prior") ? try PriorTransformer(configuration: try .init(json: try json("prior")), weights: bundle) : nil
        textProjection = try UnCLIPTextProjection(configuration: try .init(json: try json("text_proj")), weights: bundle)
        (decoder, superResolutionFirst, superResolutionLast) = (try unet("decoder"), try unet("super_res_first"), try unet("super_res_last"))
        schedulers = (try configuration.priorScheduler.map { try UnCLIPScheduler($0) }, try UnCLIPScheduler(configuration.decoderScheduler),
                      try UnCLIPScheduler(configuration.superResolutionScheduler))
        clip = parts.contains("image_encoder") ? try CLIP(unclip: m, weights: bundle) : nil
        if let prior, prior.configuration.textTokens != textEncoder.configuration.positions {
            throw DalleError.badFile("unCLIP prior reads \(prior.configuration.textTokens) text tokens, the text encoder has \(textEncoder.configuration.positions)")
        }
        if let clip, clip.config.embedDim != configuration.embeddingWidth {
            throw DalleError.badFile("unCLIP image_encoder embeds in \(clip.config.embedDim) values, the decoder reads \(configuration.embeddingWidth)")
        }
    }

    /// An upper bound of the bytes making `images` images allocates: the larger of the guided
    /// decoder's and the super-resolution's UNet calls, the text encoder and prior on both
    /// guidance branches, the bundle's CLIP on the images, and the latents, noise and images.
    public func workingBytes(images b: Int) -> Int {
        let c = configuration, text = textEncoder.configuration, f = MemoryLayout<Float>.size
        let (h, w) = c.decoderSize, (sh, sw) = c.superResolutionSize
        let unets = max(decoder.workingBytes(batch: 2 * b, height: h, width: w),
                        superResolutionFirst.workingBytes(batch: b, height: sh, width: sw),
                        superResolutionLast.workingBytes(batch: b, height: sh, width: sw))
        let encoders = WorkingMemory.product(2 * b, text.positions, 16 * text.width, f)
        let prior = prior.map { WorkingMemory.product(2 * b, $0.configuration.textTokens + $0.configuration.additionalTokens,
                                                      16 * $0.configuration.width, f) } ?? 0
        let images = WorkingMemory.product(8 * b, c.channels, sh, sw, f)
        return WorkingMemory.sum(unets, encoders, prior, clip?.workingBytes(images: b, texts: 0) ?? 0, images)
    }

    /// Images [prompts.count, 3, H′, W′] in [0, 1]. `progress(stage, step, steps)` after every step
    /// (stage 0 prior, 1 decoder, 2 super-resolution); returning false cancels (`DalleError.cancelled`).
    /// Throws `invalidArgument` for no prompts, step counts outside 1 … 1000, a guidance scale that
    /// is not a positive number, or caller noise of the wrong names or shapes; `unsupported` for a
    /// bundle without a prior.
    public func generate(prompts: [String], options: Options = Options(), noise given: [String: Tensor] = [:],
                         progress: ((Int, Int, Int) -> Bool)? = nil, pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        let run = try Run(self, images: prompts.count, options: options, noise: given, prior: true, progress: progress, pool: pool)
        let text = try encodeText(prompts, pool: pool)
        return try run.decode(try run.prior(text), text: text)
    }

    /// Variations of `images` (one output per image; repeat an image for several): each image's CLIP
    /// image embedding (the bundle's image encoder, preprocessed as its feature extractor says)
    /// takes the prior's place, the text is "" on both halves of the guidance batch, then decoder and
    /// super-resolution as `generate` (diffusers' `UnCLIPImageVariationPipeline`). Progress stages 1
    /// and 2. Throws as `generate`, `unsupported` without an image encoder, `invalidArgument` for an
    /// unreadable image or prior noise.
    public func vary(images: [ImageView], options: Options = Options(), noise given: [String: Tensor] = [:],
                     progress: ((Int, Int, Int) -> Bool)? = nil, pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        let run = try Run(self, images: images.count, options: options, noise: given, prior: false, progress: progress, pool: pool)
        let embeddings = try imageEmbeddings(images, pool: pool)
        return try run.decode(embeddings, text: try encodeText(Array(repeating: "", count: images.count), pool: pool))
    }

    /// `frames` images along the spherical interpolation between two prompts or two images, at
    /// fractions 0, 1/(frames − 1), …, 1 (DALL·E 2's interpolations; diffusers' community
    /// `unclip_text_interpolation` / `unclip_image_interpolation` pipelines). Prompts: their text
    /// embeddings and whole last hidden states are interpolated (the text mask is the union of
    /// theirs), then prior, decoder and super-resolution. Images: their CLIP image embeddings are
    /// interpolated and decoded with "" as text, every frame from the same decoder latents. Throws
    /// as `generate` and `vary`, and `invalidArgument` for a prompt and an image or frames < 1.
    public func interpolate(from start: Endpoint, to end: Endpoint, frames: Int, options: Options = Options(),
                            noise given: [String: Tensor] = [:], progress: ((Int, Int, Int) -> Bool)? = nil,
                            pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        guard frames >= 1 else { throw DalleError.invalidArgument("unCLIP interpolation: \(frames) frames (want 1 or more)") }
        let fractions = (0..<frames).map { frames == 1 ? Float(0) : Float($0) / Float(frames - 1) }
        func slerp(_ a: Tensor, _ b: Tensor) throws -> Tensor {
            let rows = try fractions.flatMap { try sphericalInterpolation(from: a.scalars, to: b.scalars, fraction: $0) }
            return Tensor(uncheckedShape: [frames] + a.shape, scalars: rows)
        }
        switch (start, end) {
        case (.prompt(let a), .prompt(let b)):
            let run = try Run(self, images: frames, options: options, noise: given, prior: true, progress: progress, pool: pool)
            let ends = try encode(["", a, b], pool: pool), length = textEncoder.configuration.positions
            let union = (0..<length).map { ends.mask[length + $0] || ends.mask[2 * length + $0] }
            let hidden = try slerp(row(ends.hidden, 1), row(ends.hidden, 2)), embeddings = try slerp(row(ends.embeddings, 1), row(ends.embeddings, 2))
            let text = Text(hidden: stacked(Array(repeating: row(ends.hidden, 0), count: frames), hidden),
                            embeddings: stacked(Array(repeating: row(ends.embeddings, 0), count: frames), embeddings),
                            mask: Array(Array(repeating: Array(ends.mask.prefix(length)), count: frames).joined())
                                + Array(Array(repeating: union, count: frames).joined()))
            return try run.decode(try run.prior(text), text: text)
        case (.image(let a), .image(let b)):
            let run = try Run(self, images: frames, options: options, noise: given, prior: false, progress: progress, pool: pool)
            let ends = try imageEmbeddings([a, b], pool: pool)
            let embeddings = try slerp(row(ends, 0), row(ends, 1))
            return try run.decode(embeddings, text: try encodeText(Array(repeating: "", count: frames), pool: pool), sharedDecoderLatents: true)
        default:
            throw DalleError.invalidArgument("unCLIP interpolates between two prompts or between two images, not a prompt and an image")
        }
    }

    /// CLIP image embeddings [N, E] of `images` with the bundle's image encoder.
    public func imageEmbeddings(_ images: [ImageView], pool: ThreadPool) throws -> Tensor {
        guard let clip else {
            throw DalleError.unsupported("this unCLIP bundle has no image encoder (convert an image-variations pipeline, or add one with convert_unclip.py --image-encoder)")
        }
        let size = clip.config.imageResolution
        return try clip.encodeImages(try CLIPPreprocess.tensor(from: images, size: size, cropRounding: clip.cropRounding), pool: pool)
    }

    /// The text side of the guidance batch: hidden states [2B, L, W], text embeddings [2B, E] and
    /// the mask (2B × L), unconditional ("") first.
    struct Text {
        var hidden: Tensor, embeddings: Tensor, mask: [Bool]
    }

    func encodeText(_ prompts: [String], pool: ThreadPool) throws -> Text {
        try encode(Array(repeating: "", count: prompts.count) + prompts, pool: pool)
    }

    /// `texts` through the tokenizer and text encoder, as they are.
    func encode(_ texts: [String], pool: ThreadPool) throws -> Text {
        let length = textEncoder.configuration.positions
        let tokens = try texts.map { try tokenizer.tokenizeCLIP($0, contextLength: length) }
        let (hidden, embeddings) = try textEncoder(tokens.map(\.ids), pool: pool)
        return Text(hidden: hidden, embeddings: embeddings, mask: tokens.flatMap { text in (0..<length).map { $0 < text.count } })
    }

    /// One call's settings, checked noise and drawing of the rest, run stage by stage.
    struct Run {
        let pipeline: UnCLIPPipeline, images: Int, options: Options, noise: UnCLIPNoise
        let progress: ((Int, Int, Int) -> Bool)?, pool: ThreadPool

        init(_ pipeline: UnCLIPPipeline, images b: Int, options o: Options, noise given: [String: Tensor], prior: Bool,
             progress: ((Int, Int, Int) -> Bool)?, pool: ThreadPool) throws {
            guard b >= 1 else { throw DalleError.invalidArgument("unCLIP: no prompts or images") }
            for (name, steps) in [("prior", o.priorSteps), ("decoder", o.decoderSteps), ("super-resolution", o.superResolutionSteps)]
                where !(1...1000).contains(steps) {
                throw DalleError.invalidArgument("unCLIP: \(steps) \(name) steps (1 to 1000)")
            }
            for scale in [o.priorGuidance, o.decoderGuidance] where !(scale.isFinite && scale > 0) {
                throw DalleError.invalidArgument("unCLIP: guidance scale \(scale) (want a number > 0)")
            }
            if prior, pipeline.prior == nil {
                throw DalleError.unsupported("this unCLIP bundle (\(pipeline.configuration.pipelineClass)) has no prior: prompts need one (it makes variations of images)")
            }
            if !prior, let name = given.keys.sorted().first(where: { $0.hasPrefix("prior_") }) {
                throw DalleError.invalidArgument("noise tensor '\(name)' given, but variations and image interpolations run no prior")
            }
            noise = try UnCLIPNoise(layout: pipeline.configuration.noiseLayout(images: b, priorSteps: o.priorSteps, decoderSteps: o.decoderSteps,
                                                                               superResolutionSteps: o.superResolutionSteps), tensors: given)
            try WorkingMemory.require(pipeline.workingBytes(images: b), threads: pool.threads, for: "making \(b) unCLIP images")
            (self.pipeline, images, options, self.progress, self.pool) = (pipeline, b, o, progress, pool)
        }

        /// Noise drawn from the seed, per stage, step (−1: the initial latents) and image.
        func drawn(_ stage: UnCLIPNoise.Stage, _ step: Int, _ shape: [Int]) -> Tensor {
            let per = shape.dropFirst().reduce(1, *)
            var scalars = [Float](repeating: 0, count: shape.reduce(1, *))
            for image in 0..<shape[0] {
                var random = SplitMix64(seed: options.seed ^ (UInt64(Stage.index(stage)) << 56) ^ (UInt64(step + 1) << 24) ^ UInt64(image))
                for i in 0..<per { scalars[image * per + i] = Float(random.nextGaussian()) }
            }
            return Tensor(uncheckedShape: shape, scalars: scalars)
        }

        func report(_ stage: Int) -> (Int, Int) -> Bool { { step, steps in progress?(stage, step, steps) ?? true } }

        func doubled(_ x: Tensor) -> Tensor { Tensor(uncheckedShape: [2 * images] + x.shape.dropFirst(), scalars: x.scalars + x.scalars) }

        /// The prior's guided loop and post-processing: image embeddings [B, E].
        func prior(_ text: Text) throws -> Tensor {
            guard let prior = pipeline.prior, let scheduler = pipeline.schedulers.prior else {
                throw DalleError.unsupported("this unCLIP bundle has no prior")
            }
            let b = images, e = pipeline.configuration.embeddingWidth, o = options
            let latents = try scheduler.denoise(
                noise.latents(.prior) ?? drawn(.prior, -1, [b, e]), steps: o.priorSteps,
                noise: { noise.stepNoise(.prior, step: $0) ?? drawn(.prior, $0, [b, e]) },
                model: { sample, t, _ in
                    try classifierFreeGuidance(prior(latents: doubled(sample), timestep: t, textEmbeddings: text.embeddings,
                                                     hiddenStates: text.hidden, textMask: text.mask, pool: pool), scale: o.priorGuidance)
                }, progress: report(0))
            return try prior.postProcess(latents)
        }

        /// text_proj, the guided decoder, clamp, antialiased bicubic upscaling and super-resolution:
        /// images [B, 3, H′, W′] in [0, 1]. `sharedDecoderLatents`: every image starts from the first
        /// image's drawn decoder latents (image interpolation), unless the caller gave them.
        func decode(_ imageEmbeddings: Tensor, text: Text, sharedDecoderLatents: Bool = false) throws -> Tensor {
            let p = pipeline, b = images, o = options
            let (context, classEmbedding) = try p.textProjection(imageEmbeddings: imageEmbeddings, textEmbeddings: text.embeddings,
                                                                 hiddenStates: text.hidden, guided: true, pool: pool)
            let extra = p.textProjection.configuration.extraContextTokens, length = p.textEncoder.configuration.positions
            let contextMask = (0..<(2 * b)).flatMap { row in [Bool](repeating: true, count: extra) + text.mask[(row * length)..<((row + 1) * length)] }
            let c = p.configuration.channels, (h, w) = p.configuration.decoderSize
            let initial = noise.latents(.decoder) ?? (sharedDecoderLatents
                ? Tensor(uncheckedShape: [b, c, h, w], scalars: Array(repeating: drawn(.decoder, -1, [1, c, h, w]).scalars, count: b).flatMap { $0 })
                : drawn(.decoder, -1, [b, c, h, w]))
            var small = try p.schedulers.decoder.denoise(
                initial, steps: o.decoderSteps,
                noise: { noise.stepNoise(.decoder, step: $0) ?? drawn(.decoder, $0, [b, c, h, w]) },
                model: { sample, t, _ in
                    try classifierFreeGuidance(p.decoder(doubled(sample), timestep: t, classEmbedding: classEmbedding, context: context,
                                                         contextMask: contextMask, pool: pool), scale: o.decoderGuidance, guidedChannels: c)
                }, progress: report(1))
            small.scalars = small.scalars.map { min(max($0, -1), 1) }

            let (sh, sw) = p.configuration.superResolutionSize
            let upscaled = try small.resizedBicubic(height: sh, width: sw, antialias: true)
            let last = o.superResolutionSteps - 1
            var image = try p.schedulers.superResolution.denoise(
                noise.latents(.superResolution) ?? drawn(.superResolution, -1, [b, c, sh, sw]), steps: o.superResolutionSteps,
                noise: { noise.stepNoise(.superResolution, step: $0) ?? drawn(.superResolution, $0, [b, c, sh, sw]) },
                model: { sample, t, i in
                    try (i == last ? p.superResolutionLast : p.superResolutionFirst)(concatenateChannels(sample, upscaled), timestep: t, pool: pool)
                }, progress: report(2))
            image.scalars = image.scalars.map { min(max($0 * 0.5 + 0.5, 0), 1) }
            return image
        }
    }

    enum Stage {
        static func index(_ stage: UnCLIPNoise.Stage) -> Int {
            switch stage { case .prior: return 0; case .decoder: return 1; case .superResolution: return 2 }
        }
    }
}

/// Item `i` of a tensor stacked along its first dimension.
private func row(_ t: Tensor, _ i: Int) -> Tensor {
    let n = t.count / t.shape[0]
    return Tensor(uncheckedShape: Array(t.shape.dropFirst()), scalars: Array(t.scalars[(i * n)..<((i + 1) * n)]))
}

/// `rows` (each of one shape) then the items of `rest` [N, …], along one first dimension.
private func stacked(_ rows: [Tensor], _ rest: Tensor) -> Tensor {
    Tensor(uncheckedShape: [rows.count + rest.shape[0]] + rest.shape.dropFirst(), scalars: rows.flatMap(\.scalars) + rest.scalars)
}

extension ComponentKind {
    /// DALL·E 2 as Karlo publishes it (tools/convert_unclip.py): every part under "unclip.".
    public static let unclip = ComponentKind(name: "unclip", component: .unclip, capabilities: [.generate]) { metadata, weights, _ in
        guard let file = weights as? SafetensorsFile else { throw DalleError.badFile("an unCLIP pipeline loads only from a model file") }
        return LoadedComponent.Parts(model: try UnCLIPPipeline(bundle: file), variant: metadata["unclip.pipeline_class"] ?? "UnCLIPPipeline",
                                     parameterCount: countParameters(weights, prefix: "unclip."))
    }
}
