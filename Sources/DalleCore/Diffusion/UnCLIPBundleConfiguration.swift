/// What an unCLIP bundle's metadata says (tools/convert_unclip.py writes it): the pipeline class, its
/// model parts, the three schedulers, and the sizes that fix the latents' shapes, read from the parts'
/// diffusers `config.json` texts, nothing assumed.
public struct UnCLIPBundleConfiguration: Sendable, Equatable {
    /// "UnCLIPPipeline" (text to image) or "UnCLIPImageVariationPipeline".
    public var pipelineClass: String
    /// The model parts the bundle holds ("text_encoder", "prior", "text_proj", "decoder", ...).
    public var parts: [String]
    /// nil for the image-variations pipeline, which has no prior.
    public var priorScheduler: UnCLIPScheduler.Configuration?
    public var decoderScheduler: UnCLIPScheduler.Configuration
    public var superResolutionScheduler: UnCLIPScheduler.Configuration
    /// The CLIP embedding width E (the prior's `embedding_dim`; without a prior, the image encoder's
    /// `projection_dim`).
    public var embeddingWidth: Int
    /// The decoder's sample size (its `sample_size`) and image channels (`in_channels`).
    public var decoderSize: (height: Int, width: Int)
    public var channels: Int
    /// The super-resolution UNets' sample size (`super_res_first`'s `sample_size`).
    public var superResolutionSize: (height: Int, width: Int)

    public static func == (a: Self, b: Self) -> Bool {
        a.pipelineClass == b.pipelineClass && a.parts == b.parts && a.priorScheduler == b.priorScheduler
            && a.decoderScheduler == b.decoderScheduler && a.superResolutionScheduler == b.superResolutionScheduler
            && a.embeddingWidth == b.embeddingWidth && a.decoderSize == b.decoderSize && a.channels == b.channels
            && a.superResolutionSize == b.superResolutionSize
    }

    /// The largest side a sample may have.
    public static let maxSide = 1 << 14

    /// Reads `unclip.*` metadata. Throws `badFile` naming the key for a missing or malformed entry
    /// or inconsistent parts, `unsupported` for another pipeline class or scheduler.
    public init(metadata: [String: String]) throws {
        func text(_ key: String) throws -> String {
            guard let v = metadata["unclip." + key] else { throw DalleError.badFile("unCLIP metadata lacks 'unclip.\(key)'") }
            return v
        }
        func config(_ part: String) throws -> DiffusersConfig {
            try DiffusersConfig(json: try text(part + ".config"), part: "unCLIP " + part)
        }
        func size(_ config: DiffusersConfig) throws -> (height: Int, width: Int) {
            let range = 1...UnCLIPBundleConfiguration.maxSide
            if let pair = config["sample_size"]?.arrayValue, pair.count == 2,
               let h = pair[0].exactInteger, let w = pair[1].exactInteger, range.contains(h), range.contains(w) {
                return (h, w)
            }
            let side = try config.int("sample_size", range)
            return (side, side)
        }
        func scheduler(_ name: String) throws -> UnCLIPScheduler.Configuration {
            let configuration: UnCLIPScheduler.Configuration
            do { configuration = try UnCLIPScheduler.Configuration(json: try text(name + ".config")) } catch DalleError.badFile(let m) {
                throw DalleError.badFile(m.hasPrefix("unCLIP metadata") ? m : "unclip.\(name).config: \(m)")
            }
            do { _ = try UnCLIPScheduler(configuration) } catch DalleError.invalidArgument(let m) {  // its values in range
                throw DalleError.badFile("unclip.\(name).config: \(m)")
            }
            return configuration
        }

        let pipelineClass = try text("pipeline_class")
        guard ["UnCLIPPipeline", "UnCLIPImageVariationPipeline"].contains(pipelineClass) else {
            throw DalleError.unsupported("unCLIP pipeline class '\(pipelineClass)'")
        }
        let parts = try text("parts").split(separator: ",").map(String.init)
        (self.pipelineClass, self.parts) = (pipelineClass, parts)
        let needed = ["text_encoder", "text_proj", "decoder", "super_res_first", "super_res_last"]
            + (pipelineClass == "UnCLIPPipeline" ? ["prior"] : ["image_encoder"])
        if let missing = needed.first(where: { !parts.contains($0) }) {
            throw DalleError.badFile("unCLIP bundle (\(pipelineClass)) lacks its '\(missing)' part")
        }
        priorScheduler = parts.contains("prior") ? try scheduler("prior_scheduler") : nil
        decoderScheduler = try scheduler("decoder_scheduler")
        superResolutionScheduler = try scheduler("super_res_scheduler")

        embeddingWidth = parts.contains("prior")
            ? try config("prior").int("embedding_dim", 1...65536)
            : try config("image_encoder").int("projection_dim", 1...65536)
        let decoder = try config("decoder"), superResolution = try config("super_res_first")
        decoderSize = try size(decoder)
        channels = try decoder.int("in_channels", 1...64)
        superResolutionSize = try size(superResolution)
        let superChannels = try superResolution.int("in_channels", 2...128)
        guard superChannels == 2 * channels else {
            throw DalleError.badFile("unCLIP super_res_first takes \(superChannels) channels, expected twice the decoder's \(channels)")
        }
        let last = try config("super_res_last")
        guard try size(last) == superResolutionSize, try last.int("in_channels", 2...128) == superChannels else {
            throw DalleError.badFile("unCLIP super_res_last's sample size or channels differ from super_res_first's")
        }
    }

    /// The shapes caller-given noise must have for `images` images and these step counts.
    public func noiseLayout(images: Int, priorSteps: Int, decoderSteps: Int, superResolutionSteps: Int) -> UnCLIPNoise.Layout {
        var layout = UnCLIPNoise.Layout(images: images, embeddingWidth: embeddingWidth, decoderSize: decoderSize,
                                        superResolutionSize: superResolutionSize, priorSteps: priorSteps,
                                        decoderSteps: decoderSteps, superResolutionSteps: superResolutionSteps)
        layout.channels = channels
        return layout
    }
}
