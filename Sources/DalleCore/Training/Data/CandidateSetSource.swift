/// A judged candidate set (`ShapesWorld.CandidateSet`) as CLIP training data: example i is
/// caption i with its first passing candidate (its reference when none passed) and up to
/// `negativesPerExample` of its failing candidates, in draw order, as hard negatives. So CLIP
/// learns to rank a model's own candidates the way the judge does.
public struct CandidateSetSource: TrainingDataSource {
    public let candidateSet: ShapesWorld.CandidateSet
    public let imageSize: Int
    public let negativesPerExample: Int

    /// Images are resized (`RGBImage.resized`) when `imageSize` differs from the set's. Throws
    /// for an image size outside 1...4096 or a negative count of negatives.
    public init(set: ShapesWorld.CandidateSet, imageSize: Int, negativesPerExample: Int = 2) throws {
        guard imageSize >= 1, imageSize <= 4096 else {
            throw DalleError.invalidArgument("image size must be 1...4096, got \(imageSize)")
        }
        guard negativesPerExample >= 0 else {
            throw DalleError.invalidArgument("negatives per example must be ≥ 0, got \(negativesPerExample)")
        }
        self.candidateSet = set
        self.imageSize = imageSize
        self.negativesPerExample = negativesPerExample
    }

    public var count: Int { candidateSet.captions.count }

    public func example(at index: Int) throws -> TrainingExample {
        try checkIndex(index)
        let set = candidateSet, candidates = set.candidates[index], passed = set.passed[index]
        let positive = passed.firstIndex(of: true).map { candidates[$0] } ?? set.references[index]
        let negatives = candidates.indices.filter { !passed[$0] }.prefix(negativesPerExample).map { candidates[$0] }
        func sized(_ image: RGBImage) throws -> RGBImage {
            image.width == imageSize ? image : try image.resized(width: imageSize, height: imageSize)
        }
        return TrainingExample(caption: set.captions[index], image: try sized(positive), negatives: try negatives.map(sized))
    }
}
