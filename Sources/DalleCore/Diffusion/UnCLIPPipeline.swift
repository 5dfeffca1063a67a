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

    public let configuration: UnCLIPBundleConfiguration
    let tokenizer: Tokenizer
    let textEncoder: UnCLIPTextEncoder, prior: PriorTransformer, textProjection: UnCLIPTextProjection
    let decoder: UnCLIPUNet, superResolutionFirst: UnCLIPUNet, superResolutionLast: UnCLIPUNet
    let schedulers: (prior: UnCLIPScheduler, decoder: UnCLIPScheduler, superResolution: UnCLIPScheduler)

    /// Loads every part of a text-to-image bundle, strictly (`badFile` for a missing or extra tensor
    /// or a wrong shape; `unsupported` for an image-variations bundle or options these ports lack).
    public init(bundle: SafetensorsFile) throws {
        let m = bundle.metadata
        configuration = try UnCLIPBundleConfiguration(metadata: m)
        guard let priorScheduler = configuration.priorScheduler else {
            throw DalleError.unsupported("this unCLIP bundle (\(configuration.pipelineClass)) has no prior: text-to-image needs one")
        }
        func json(_ part: String) throws -> String {
            guard let text = m["unclip.\(part).config"] else { throw DalleError.badFile("unCLIP metadata lacks 'unclip.\(part).config'") }
            return text
        }
        func unet(_ part: String) throws -> UnCLIPUNet {
            try UnCLIPUNet(configuration: try .init(json: try json(part), part: part), weights: bundle, prefix: "unclip.\(part).")
        }
        tokenizer = try Tokenizer(metadata: m, weights: bundle)
        textEncoder = try UnCLIPTextEncoder(configuration: try .init(json: try json("text_encoder")), weights: bundle)
        prior = try PriorTransformer(configuration: try .init(json: try json("prior")), weights: bundle)
        textProjection = try UnCLIPTextProjection(configuration: try .init(json: try json("text_proj")), weights: bundle)
        (decoder, superResolutionFirst, superResolutionLast) = (try unet("decoder"), try unet("super_res_first"), try unet("super_res_last"))
        schedulers = (try UnCLIPScheduler(priorScheduler), try UnCLIPScheduler(configuration.decoderScheduler),
                      try UnCLIPScheduler(configuration.superResolutionScheduler))
        guard prior.configuration.textTokens == textEncoder.configuration.positions else {
            throw DalleError.badFile("unCLIP prior reads \(prior.configuration.textTokens) text tokens, the text encoder has \(textEncoder.configuration.positions)")
        }
    }

    /// Images [prompts.count, 3, H′, W′] in [0, 1]. `progress(stage, step, steps)` after every step
    /// (stage 0 prior, 1 decoder, 2 super-resolution); returning false cancels (`DalleError.cancelled`).
    /// Throws `invalidArgument` for no prompts, step counts outside 1 … 1000, a guidance scale that
    /// is not a positive number, or caller noise of the wrong names or shapes.
    public func generate(prompts: [String], options: Options = Options(), noise given: [String: Tensor] = [:],
                         progress: ((Int, Int, Int) -> Bool)? = nil, pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        let b = prompts.count, o = options
        guard b >= 1 else { throw DalleError.invalidArgument("unCLIP: no prompts") }
        for (name, steps) in [("prior", o.priorSteps), ("decoder", o.decoderSteps), ("super-resolution", o.superResolutionSteps)]
            where !(1...1000).contains(steps) {
            throw DalleError.invalidArgument("unCLIP: \(steps) \(name) steps (1 to 1000)")
        }
        for scale in [o.priorGuidance, o.decoderGuidance] where !(scale.isFinite && scale > 0) {
            throw DalleError.invalidArgument("unCLIP: guidance scale \(scale) (want a number > 0)")
        }
        let noise = try UnCLIPNoise(layout: configuration.noiseLayout(images: b, priorSteps: o.priorSteps, decoderSteps: o.decoderSteps,
                                                                      superResolutionSteps: o.superResolutionSteps), tensors: given)
        func drawn(_ stage: UnCLIPNoise.Stage, _ step: Int, _ shape: [Int]) -> Tensor {
            let per = shape.dropFirst().reduce(1, *)
            var scalars = [Float](repeating: 0, count: shape.reduce(1, *))
            for image in 0..<shape[0] {
                var random = SplitMix64(seed: o.seed ^ (UInt64(Stage.index(stage)) << 56) ^ (UInt64(step + 1) << 24) ^ UInt64(image))
                for i in 0..<per { scalars[image * per + i] = Float(random.nextGaussian()) }
            }
            return Tensor(uncheckedShape: shape, scalars: scalars)
        }
        func report(_ stage: Int) -> (Int, Int) -> Bool { { step, steps in progress?(stage, step, steps) ?? true } }

        // Text: the guidance batch is ["" × B, prompts].
        let length = textEncoder.configuration.positions
        let texts = try (Array(repeating: "", count: b) + prompts).map { try tokenizer.tokenizeCLIP($0, contextLength: length) }
        let (hidden, embeddings) = try textEncoder(texts.map(\.ids), pool: pool)
        let mask = texts.flatMap { text in (0..<length).map { $0 < text.count } }
        func doubled(_ x: Tensor) -> Tensor { Tensor(uncheckedShape: [2 * b] + x.shape.dropFirst(), scalars: x.scalars + x.scalars) }

        let e = configuration.embeddingWidth
        let priorLatents = try schedulers.prior.denoise(
            noise.latents(.prior) ?? drawn(.prior, -1, [b, e]), steps: o.priorSteps,
            noise: { noise.stepNoise(.prior, step: $0) ?? drawn(.prior, $0, [b, e]) },
            model: { sample, t, _ in
                try classifierFreeGuidance(self.prior(latents: doubled(sample), timestep: t, textEmbeddings: embeddings, hiddenStates: hidden,
                                                      textMask: mask, pool: pool), scale: o.priorGuidance)
            }, progress: report(0))
        let imageEmbeddings = try prior.postProcess(priorLatents)

        let (context, classEmbedding) = try textProjection(imageEmbeddings: imageEmbeddings, textEmbeddings: embeddings,
                                                           hiddenStates: hidden, guided: true, pool: pool)
        let extra = textProjection.configuration.extraContextTokens
        let contextMask = (0..<(2 * b)).flatMap { row in [Bool](repeating: true, count: extra) + mask[(row * length)..<((row + 1) * length)] }
        let c = configuration.channels, (h, w) = configuration.decoderSize
        var small = try schedulers.decoder.denoise(
            noise.latents(.decoder) ?? drawn(.decoder, -1, [b, c, h, w]), steps: o.decoderSteps,
            noise: { noise.stepNoise(.decoder, step: $0) ?? drawn(.decoder, $0, [b, c, h, w]) },
            model: { sample, t, _ in
                try classifierFreeGuidance(self.decoder(doubled(sample), timestep: t, classEmbedding: classEmbedding, context: context,
                                                        contextMask: contextMask, pool: pool), scale: o.decoderGuidance, guidedChannels: c)
            }, progress: report(1))
        small.scalars = small.scalars.map { min(max($0, -1), 1) }

        let (sh, sw) = configuration.superResolutionSize
        let upscaled = try small.resizedBicubic(height: sh, width: sw, antialias: true)
        let last = o.superResolutionSteps - 1
        var image = try schedulers.superResolution.denoise(
            noise.latents(.superResolution) ?? drawn(.superResolution, -1, [b, c, sh, sw]), steps: o.superResolutionSteps,
            noise: { noise.stepNoise(.superResolution, step: $0) ?? drawn(.superResolution, $0, [b, c, sh, sw]) },
            model: { sample, t, i in
                try (i == last ? self.superResolutionLast : self.superResolutionFirst)(concatenateChannels(sample, upscaled), timestep: t, pool: pool)
            }, progress: report(2))
        image.scalars = image.scalars.map { min(max($0 * 0.5 + 0.5, 0), 1) }
        return image
    }

    enum Stage {
        static func index(_ stage: UnCLIPNoise.Stage) -> Int {
            switch stage { case .prior: return 0; case .decoder: return 1; case .superResolution: return 2 }
        }
    }
}

extension ComponentKind {
    /// DALL·E 2 as Karlo publishes it (tools/convert_unclip.py): every part under "unclip.".
    public static let unclip = ComponentKind(name: "unclip", component: .unclip, capabilities: [.generate]) { metadata, weights, _ in
        guard let file = weights as? SafetensorsFile else { throw DalleError.badFile("an unCLIP pipeline loads only from a model file") }
        return LoadedComponent.Parts(model: try UnCLIPPipeline(bundle: file), variant: metadata["unclip.pipeline_class"] ?? "UnCLIPPipeline",
                                     parameterCount: countParameters(weights, prefix: "unclip."))
    }
}
