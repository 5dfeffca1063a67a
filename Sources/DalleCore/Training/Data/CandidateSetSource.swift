/// A judged candidate set (`ShapesWorld.CandidateSet`) as CLIP training data: example i is
/// caption i with one of its passing candidates (its reference when none passed) and up to
/// `negativesPerExample` of its failing candidates as hard negatives. Each pass over the data
/// (epoch) takes the next passing candidate and the next failing ones, in draw order and round
/// again, so that several epochs see all of a caption's candidates. So CLIP learns to rank a
/// model's own candidates the way the judge does.
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
        try example(at: index, epoch: 0)
    }

    public func example(at index: Int, epoch: Int) throws -> TrainingExample {
        try checkIndex(index)
        guard epoch >= 0 else { throw DalleError.invalidArgument("epoch must be ≥ 0, got \(epoch)") }
        let set = candidateSet, candidates = set.candidates[index], passed = set.passed[index]
        let passing = candidates.indices.filter { passed[$0] }, failing = candidates.indices.filter { !passed[$0] }
        let positive = passing.isEmpty ? set.references[index] : candidates[passing[epoch % passing.count]]
        // The epoch's first negative: epoch · negativesPerExample, modulo the failing count (reduced first: no overflow).
        let first = failing.isEmpty ? 0 : epoch % failing.count * (negativesPerExample % failing.count)
        let negatives = (0..<min(negativesPerExample, failing.count)).map { candidates[failing[(first + $0) % failing.count]] }
        func sized(_ image: RGBImage) throws -> RGBImage {
            image.width == imageSize ? image : try image.resized(width: imageSize, height: imageSize)
        }
        return TrainingExample(caption: set.captions[index], image: try sized(positive), negatives: try negatives.map(sized))
    }
}
