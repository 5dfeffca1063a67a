/// One captioned training image, RGB8, already at the model's image size.
public struct TrainingExample: Equatable, Sendable {
    public var caption: String
    public var image: RGBImage
    /// Images the caption does not describe, same size (hard negatives: CLIP trains each caption
    /// to score its image above them; the other stages ignore them).
    public var negatives: [RGBImage]
    /// Captions the image does not show (hard negatives on the text side: CLIP trains the image
    /// to score its caption above them; the other stages ignore them).
    public var negativeCaptions: [String]

    public init(caption: String, image: RGBImage, negatives: [RGBImage] = [], negativeCaptions: [String] = []) {
        self.caption = caption
        self.image = image
        self.negatives = negatives
        self.negativeCaptions = negativeCaptions
    }
}

/// A source of training examples, addressed by index (deterministic: the same index always gives the same example).
public protocol TrainingDataSource: Sendable {
    /// Examples available (Int.max for an endless generated stream).
    var count: Int { get }
    /// Every example's image is `imageSize`×`imageSize`.
    var imageSize: Int { get }
    /// Example `index`, 0 ≤ index < count; throws `invalidArgument` outside that range.
    func example(at index: Int) throws -> TrainingExample
    /// Example `index` as the trainer's `epoch`-th pass over the source sees it (0-based), for
    /// sources that vary an example between passes; the default is `example(at: index)`.
    func example(at index: Int, epoch: Int) throws -> TrainingExample
    /// Splits the source into training examples and `validationCount` held-out examples,
    /// deterministically and without overlap. The default (for finite sources) holds out every
    /// k-th example, k = count / validationCount, starting at k / 2; both parts keep the source's order.
    func trainingAndValidation(validationCount: Int) throws -> TrainingSplit
}

/// Training examples and the held-out examples a validation loss is measured on.
public struct TrainingSplit: Sendable {
    public var training: any TrainingDataSource
    public var validation: any TrainingDataSource

    public init(training: any TrainingDataSource, validation: any TrainingDataSource) {
        self.training = training
        self.validation = validation
    }
}

extension TrainingDataSource {
    public func trainingAndValidation(validationCount: Int) throws -> TrainingSplit {
        guard count < Int.max else {
            throw DalleError.invalidArgument("an endless training source cannot be split by index; it needs its own validation source")
        }
        guard validationCount >= 0, validationCount < count else {
            throw DalleError.invalidArgument("validation count must be 0..<\(count) (the number of examples), got \(validationCount)")
        }
        guard validationCount > 0 else {
            return TrainingSplit(training: self, validation: TrainingSubset(base: self, indices: []))
        }
        let k = count / validationCount
        let heldOut = (0..<validationCount).map { $0 * k + k / 2 }
        var training: [Int] = []
        training.reserveCapacity(count - validationCount)
        var next = 0
        for i in 0..<count {
            if next < heldOut.count && heldOut[next] == i { next += 1 } else { training.append(i) }
        }
        return TrainingSplit(training: TrainingSubset(base: self, indices: training),
                             validation: TrainingSubset(base: self, indices: heldOut))
    }

    /// Holds out round(fraction · count) examples of a finite source, at least 1 when it has ≥ 2
    /// examples and always leaving at least 1 for training (none held out from a single example).
    /// `fraction` must be in [0, 1).
    public func trainingAndValidation(validationFraction fraction: Double) throws -> TrainingSplit {
        guard count < Int.max else {
            throw DalleError.invalidArgument("an endless training source needs a validation count, not a fraction")
        }
        guard fraction >= 0, fraction < 1 else {
            throw DalleError.invalidArgument("validation fraction must be in [0, 1), got \(fraction)")
        }
        let wanted = Int((fraction * Double(count)).rounded())
        let held = fraction == 0 || count < 2 ? 0 : min(max(wanted, 1), count - 1)
        return try trainingAndValidation(validationCount: held)
    }

    public func example(at index: Int, epoch: Int) throws -> TrainingExample {
        try example(at: index)
    }

    /// Throws `invalidArgument` unless 0 ≤ index < count.
    func checkIndex(_ index: Int) throws {
        guard index >= 0, index < count else {
            throw DalleError.invalidArgument("training example \(index) is out of range 0..<\(count)")
        }
    }
}

/// The examples of `base` at `indices`, in that order.
public struct TrainingSubset: TrainingDataSource {
    public let base: any TrainingDataSource
    public let indices: [Int]

    public init(base: any TrainingDataSource, indices: [Int]) {
        self.base = base
        self.indices = indices
    }

    public var count: Int { indices.count }
    public var imageSize: Int { base.imageSize }

    public func example(at index: Int) throws -> TrainingExample {
        try example(at: index, epoch: 0)
    }

    public func example(at index: Int, epoch: Int) throws -> TrainingExample {
        try checkIndex(index)
        return try base.example(at: indices[index], epoch: epoch)
    }
}
