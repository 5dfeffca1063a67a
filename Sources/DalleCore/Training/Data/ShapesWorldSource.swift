/// The Shapes World training stream as a training source: example i is
/// `ShapesWorld.trainingSample(seed:index:mix:)` number i, its caption the canonical text.
/// With `nearMisses`, examples come in pairs: 2k is sample k and 2k + 1 its near miss
/// (`ShapesWorld.makeNearMissSample`), so every even batch holds each caption's hard negative.
/// With `defects` n, each example carries up to n of its own picture's defect images as hard
/// negatives (`ShapesWorld.makeDefectImages`: misshapen, merged, missing, extra or resized objects).
public struct ShapesWorldSource: TrainingDataSource {
    public let seed: UInt64
    public let mix: ShapesWorld.TemplateMix
    public let count: Int
    public let imageSize: Int
    public let nearMisses: Bool
    public let defects: Int

    /// `count` Int.max is the endless stream. Images are rendered at 64×64 and resized
    /// (`RGBImage.resized`) when `imageSize` differs. Throws for a mix without positive
    /// weights, a negative count, an image size outside 1...4096, defects outside 0...8, or
    /// both near misses and defects.
    public init(seed: UInt64, mix: ShapesWorld.TemplateMix = .standard, count: Int = .max,
                imageSize: Int = ShapesWorld.imageSize, nearMisses: Bool = false, defects: Int = 0) throws {
        try mix.validate()
        guard count >= 0 else { throw DalleError.invalidArgument("example count must be ≥ 0, got \(count)") }
        guard imageSize >= 1, imageSize <= 4096 else {
            throw DalleError.invalidArgument("image size must be 1...4096, got \(imageSize)")
        }
        guard (0...8).contains(defects) else { throw DalleError.invalidArgument("defects per example must be 0...8, got \(defects)") }
        guard defects == 0 || !nearMisses else { throw DalleError.invalidArgument("near misses and defects cannot be combined") }
        self.seed = seed
        self.mix = mix
        self.count = count
        self.imageSize = imageSize
        self.nearMisses = nearMisses
        self.defects = defects
    }

    public func example(at index: Int) throws -> TrainingExample {
        try checkIndex(index)
        let k = UInt64(nearMisses ? index / 2 : index)
        let sample = nearMisses && index % 2 == 1 ? ShapesWorld.makeNearMissSample(seed: seed, index: k, mix: mix)
            : ShapesWorld.makeTrainingSample(seed: seed, index: k, mix: mix)
        func sized(_ image: RGBImage) throws -> RGBImage {
            imageSize == ShapesWorld.imageSize ? image : try image.resized(width: imageSize, height: imageSize)
        }
        let negatives = defects == 0 ? [] : ShapesWorld.makeDefectImages(seed: seed, index: k, mix: mix, count: defects)
        return TrainingExample(caption: sample.caption.text, image: try sized(sample.image), negatives: try negatives.map(sized))
    }

    /// Training: this source unchanged. Validation: the first `validationCount` samples of the
    /// stream with seed `validationSeed(for: seed)`, so no training sample is held out and the
    /// validation set is the same whatever the training length.
    public func trainingAndValidation(validationCount: Int) throws -> TrainingSplit {
        guard validationCount >= 0 else {
            throw DalleError.invalidArgument("validation count must be ≥ 0, got \(validationCount)")
        }
        let validation = try ShapesWorldSource(seed: Self.validationSeed(for: seed), mix: mix,
                                               count: validationCount, imageSize: imageSize, nearMisses: nearMisses, defects: defects)
        return TrainingSplit(training: self, validation: validation)
    }

    /// The seed of the validation stream that goes with training seed `seed` (never equal to it).
    public static func validationSeed(for seed: UInt64) -> UInt64 { seed ^ 0x7661_6C69_6461_7465 }  // "validate"
}
