/// The Shapes World training stream as a training source: example i is
/// `ShapesWorld.trainingSample(seed:index:mix:)` number i, its caption the canonical text.
/// With `nearMisses`, examples come in pairs: 2k is sample k and 2k + 1 its near miss
/// (`ShapesWorld.makeNearMissSample`), so every even batch holds each caption's hard negative.
public struct ShapesWorldSource: TrainingDataSource {
    public let seed: UInt64
    public let mix: ShapesWorld.TemplateMix
    public let count: Int
    public let imageSize: Int
    public let nearMisses: Bool

    /// `count` Int.max is the endless stream. Images are rendered at 64×64 and resized
    /// (`RGBImage.resized`) when `imageSize` differs. Throws for a mix without positive
    /// weights, a negative count, or an image size outside 1...4096.
    public init(seed: UInt64, mix: ShapesWorld.TemplateMix = .standard, count: Int = .max,
                imageSize: Int = ShapesWorld.imageSize, nearMisses: Bool = false) throws {
        try mix.validate()
        guard count >= 0 else { throw DalleError.invalidArgument("example count must be ≥ 0, got \(count)") }
        guard imageSize >= 1, imageSize <= 4096 else {
            throw DalleError.invalidArgument("image size must be 1...4096, got \(imageSize)")
        }
        self.seed = seed
        self.mix = mix
        self.count = count
        self.imageSize = imageSize
        self.nearMisses = nearMisses
    }

    public func example(at index: Int) throws -> TrainingExample {
        try checkIndex(index)
        let k = UInt64(nearMisses ? index / 2 : index)
        let sample = nearMisses && index % 2 == 1 ? ShapesWorld.makeNearMissSample(seed: seed, index: k, mix: mix)
            : ShapesWorld.makeTrainingSample(seed: seed, index: k, mix: mix)
        let image = imageSize == ShapesWorld.imageSize
            ? sample.image : try sample.image.resized(width: imageSize, height: imageSize)
        return TrainingExample(caption: sample.caption.text, image: image)
    }

    /// Training: this source unchanged. Validation: the first `validationCount` samples of the
    /// stream with seed `validationSeed(for: seed)`, so no training sample is held out and the
    /// validation set is the same whatever the training length.
    public func trainingAndValidation(validationCount: Int) throws -> TrainingSplit {
        guard validationCount >= 0 else {
            throw DalleError.invalidArgument("validation count must be ≥ 0, got \(validationCount)")
        }
        let validation = try ShapesWorldSource(seed: Self.validationSeed(for: seed), mix: mix,
                                               count: validationCount, imageSize: imageSize, nearMisses: nearMisses)
        return TrainingSplit(training: self, validation: validation)
    }

    /// The seed of the validation stream that goes with training seed `seed` (never equal to it).
    public static func validationSeed(for seed: UInt64) -> UInt64 { seed ^ 0x7661_6C69_6461_7465 }  // "validate"
}
