/// Caller-given noise for an unCLIP run, so a run can reproduce a diffusers one step for step (its
/// `prior_latents` / `decoder_latents` / `super_res_latents` arguments plus the noise each scheduler
/// step draws), or walk a latent space.
///
/// A safetensors file (or a dictionary) holding float32 tensors named
/// - `prior_latents` [B, E], `prior_step_noise` [P − 1, B, E]
/// - `decoder_latents` [B, 3, H, W], `decoder_step_noise` [D − 1, B, 3, H, W]
/// - `super_res_latents` [B, 3, H′, W′], `super_res_step_noise` [S − 1, B, 3, H′, W′]
///
/// (B images, E the CLIP embedding width, H×W the decoder's and H′×W′ the super-resolution UNets'
/// sizes, P/D/S the step counts; step noise in step order, none for the last step). Any subset may be
/// given; the rest is the caller's to draw.
public struct UnCLIPNoise: Sendable, Equatable {
    /// What the run expects: the sizes that fix every tensor's shape.
    public struct Layout: Sendable, Equatable {
        public var images: Int
        public var embeddingWidth: Int
        public var decoderSize: (height: Int, width: Int)
        public var superResolutionSize: (height: Int, width: Int)
        public var priorSteps: Int
        public var decoderSteps: Int
        public var superResolutionSteps: Int
        /// Image channels of the decoder's and super-resolution samples (RGB).
        public var channels = 3

        public init(images: Int, embeddingWidth: Int, decoderSize: (height: Int, width: Int),
                    superResolutionSize: (height: Int, width: Int), priorSteps: Int, decoderSteps: Int,
                    superResolutionSteps: Int) {
            self.images = images
            self.embeddingWidth = embeddingWidth
            self.decoderSize = decoderSize
            self.superResolutionSize = superResolutionSize
            self.priorSteps = priorSteps
            self.decoderSteps = decoderSteps
            self.superResolutionSteps = superResolutionSteps
        }

        public static func == (a: Layout, b: Layout) -> Bool {
            a.images == b.images && a.embeddingWidth == b.embeddingWidth && a.decoderSize == b.decoderSize
                && a.superResolutionSize == b.superResolutionSize && a.priorSteps == b.priorSteps
                && a.decoderSteps == b.decoderSteps && a.superResolutionSteps == b.superResolutionSteps
                && a.channels == b.channels
        }

        /// Each accepted name with its shape and a description of that shape for messages.
        public var expected: [(name: String, shape: [Int], meaning: String)] {
            let (h, w) = decoderSize, (sh, sw) = superResolutionSize, b = images, c = channels
            let shapes: [(shape: [Int], meaning: String)] = [
                ([b, embeddingWidth], "[images, embedding width]"),
                ([priorSteps - 1, b, embeddingWidth], "[prior steps - 1, images, embedding width]"),
                ([b, c, h, w], "[images, channels, decoder height, decoder width]"),
                ([decoderSteps - 1, b, c, h, w], "[decoder steps - 1, images, channels, height, width]"),
                ([b, c, sh, sw], "[images, channels, super-resolution height, width]"),
                ([superResolutionSteps - 1, b, c, sh, sw], "[super-resolution steps - 1, images, channels, height, width]"),
            ]
            return zip(UnCLIPNoise.names, shapes).map { ($0, $1.shape, $1.meaning) }
        }
    }

    /// The names a noise tensor may have, in the order of `Layout.expected`.
    public static let names = ["prior_latents", "prior_step_noise", "decoder_latents", "decoder_step_noise",
                               "super_res_latents", "super_res_step_noise"]

    /// The most values one noise tensor may hold (256 Mi).
    public static let maxCount = 1 << 28

    public let layout: Layout
    /// The given tensors by name (a subset of `Layout.expected`'s names).
    public let tensors: [String: Tensor]

    /// Reads and checks every tensor of `file`. Throws `invalidArgument` for a name that is not one of
    /// the six, a tensor that is not float32, a wrong shape (saying which shape was expected and
    /// why), or a value that is not finite (naming the tensor and index); for a layout with sizes or
    /// step counts below 1, or shapes too large to hold.
    public init(file: SafetensorsFile, layout: Layout) throws {
        try self.init(layout: layout, tensors: try Self.tensors(in: file))
    }

    /// The float32 tensors of a noise file by name, before the run's shapes are known (those are
    /// checked by `init(layout:tensors:)`). Throws `invalidArgument` for a name that is not one of
    /// the six, a tensor that is not float32, or one of more than `maxCount` values.
    public static func tensors(in file: SafetensorsFile) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for name in file.names {
            guard names.contains(name) else { throw Self.unexpected(name) }
            guard let info = file.info(name), info.dtype == .f32 else {
                throw DalleError.invalidArgument("noise tensor '\(name)' is \(file.info(name)?.dtype.rawValue ?? "?"), expected F32")
            }
            guard let count = Tensor.elementCount(info.shape), count <= maxCount else {
                throw DalleError.invalidArgument("noise tensor '\(name)' of shape \(info.shape) is too large")
            }
            tensors[name] = try file.tensor(name)
        }
        return tensors
    }

    /// Checks `tensors` as `init(file:layout:)` does.
    public init(layout: Layout, tensors: [String: Tensor]) throws {
        let sizes = [layout.images, layout.embeddingWidth, layout.decoderSize.height, layout.decoderSize.width,
                     layout.superResolutionSize.height, layout.superResolutionSize.width, layout.priorSteps,
                     layout.decoderSteps, layout.superResolutionSteps, layout.channels]
        guard sizes.allSatisfy({ $0 >= 1 }) else {
            throw DalleError.invalidArgument("unCLIP noise layout with a size or step count below 1: \(sizes)")
        }
        let expected = layout.expected
        for (_, shape, _) in expected where Tensor.elementCount(shape).map({ $0 > Self.maxCount }) ?? true {
            throw DalleError.invalidArgument("unCLIP noise of shape \(shape) is too large")
        }
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let want = expected.first(where: { $0.name == name }) else { throw Self.unexpected(name) }
            guard t.shape == want.shape else { throw Self.wrongShape(name, t.shape, want) }
            if let i = t.scalars.firstIndex(where: { !$0.isFinite }) {
                throw DalleError.invalidArgument("noise tensor '\(name)' holds \(t.scalars[i]) at index \(i)")
            }
        }
        self.layout = layout
        self.tensors = tensors
    }

    private static func unexpected(_ name: String) -> DalleError {
        .invalidArgument("unexpected noise tensor '\(name)' (expected some of: " + names.joined(separator: ", ") + ")")
    }

    private static func wrongShape(_ name: String, _ shape: [Int], _ want: (name: String, shape: [Int], meaning: String)) -> DalleError {
        .invalidArgument("noise tensor '\(name)' has shape \(shape), expected \(want.shape) \(want.meaning)")
    }

    public enum Stage: String, Sendable, CaseIterable {
        case prior, decoder
        case superResolution = "super_res"
    }

    /// The stage's initial latents, or nil when not given.
    public func latents(_ stage: Stage) -> Tensor? { tensors["\(stage.rawValue)_latents"] }

    /// The noise of step `index` (0-based, in step order) of `stage`, or nil when not given or the
    /// step draws none (the last). Images × the sample's shape.
    public func stepNoise(_ stage: Stage, step index: Int) -> Tensor? {
        guard let all = tensors["\(stage.rawValue)_step_noise"], index >= 0, index < all.shape[0] else { return nil }
        let n = all.count / all.shape[0]
        return Tensor(uncheckedShape: Array(all.shape.dropFirst()), scalars: Array(all.scalars[(index * n)..<((index + 1) * n)]))
    }
}
