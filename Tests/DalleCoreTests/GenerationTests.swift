import CDalle
import DalleCAPI
import XCTest
@testable import DalleCore

/// A small deterministic stand-in for the transformer: the next position's logits are a fixed
/// pseudo-random function of the whole sequence so far. Its cache is the sequences themselves,
/// so `fullLogits` (recomputed from scratch) checks what the cached path returns. Candidates
/// are sampled in groups on several threads, so its call counts are kept under a lock.
final class MockPredictor: ImageTokenPredictor, @unchecked Sendable {
    let textLength = 4, imageGridSize = 3, imageVocabSize = 6, imageLogitOffset = 5
    private let lock = Lock()
    private var counts = (prefills: 0, steps: 0)
    var prefills: Int { lock.withLock { counts.prefills } }
    var steps: Int { lock.withLock { counts.steps } }
    /// The step call (counted over all groups) that throws instead, if any.
    var failingStep: Int?

    /// A small model: candidates are sampled in groups, several threads at once.
    var stepWeightBytes = 1024
    func workingBytes(batch: Int) -> Int { batch * 64 }
    func makeCache(batch: Int) throws -> [[Int32]] { [[Int32]](repeating: [], count: batch) }

    func prefill(text: [Int32], image: [Int32], batch: Int, cache: inout [[Int32]], pool: ThreadPool) throws -> Tensor {
        lock.withLock { counts.prefills += 1 }
        let prime = image.count / batch
        for b in 0..<batch {
            cache[b] = Array(text[(b * textLength)..<((b + 1) * textLength)]) + Array(image[(b * prime)..<((b + 1) * prime)])
        }
        return fullLogits(cache)
    }

    func step(imageTokens: [Int32], cache: inout [[Int32]], pool: ThreadPool) throws -> Tensor {
        let call = lock.withLock { counts.steps += 1; return counts.steps }
        if call == failingStep { throw DalleError.invalidArgument("mock failure at step \(call)") }
        for b in cache.indices { cache[b].append(imageTokens[b]) }
        return fullLogits(cache)
    }

    /// Logits of the position after each sequence: [batch, offset + vocab], the text part -1e9.
    func fullLogits(_ sequences: [[Int32]]) -> Tensor {
        let row = imageLogitOffset + imageVocabSize
        var out = [Float](repeating: -1e9, count: sequences.count * row)
        for (b, sequence) in sequences.enumerated() {
            var h: UInt64 = 1469598103934665603
            for t in sequence { h = (h ^ UInt64(bitPattern: Int64(t))) &* 1099511628211 }
            for v in 0..<imageVocabSize {
                out[b * row + imageLogitOffset + v] = Float(CounterRandom(seed: h).uniform(stream: v, counter: sequence.count)) * 4
            }
        }
        return Tensor(uncheckedShape: [sequences.count, row], scalars: out)
    }
}

final class GenerationTests: XCTestCase {
    let prompt: [Int32] = [7, 3, 0, 0]

    func assertInvalid<T>(_ body: @autoclosure () throws -> T, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case .invalidArgument(let message)? = error as? DalleError else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    // MARK: Sampling

    func candidates(_ logits: [Float], _ options: SamplingOptions) -> [(token: Int, probability: Double)] {
        logits.withUnsafeBufferPointer { Sampler.candidates($0, options: options) }
    }

    func assertCandidates(_ logits: [Float], _ options: SamplingOptions, _ expected: [(Int, Double)],
                          file: StaticString = #filePath, line: UInt = #line) {
        let got = candidates(logits, options)
        XCTAssertEqual(got.map(\.token), expected.map(\.0), file: file, line: line)
        for (g, e) in zip(got, expected) { XCTAssertEqual(g.probability, e.1, accuracy: 1e-7, file: file, line: line) }
    }

    func testTopK() {
        let e3 = exp(3.0), e2 = exp(2.0)
        assertCandidates([1, 3, 2, 0], SamplingOptions(topK: 2), [(1, e3 / (e3 + e2)), (2, e2 / (e3 + e2))])
        assertCandidates([1, 3, 2, 0], SamplingOptions(topK: 1), [(1, 1)])
        // Ties keep the lower id; k above the vocabulary keeps everything.
        assertCandidates([2, 2, 1], SamplingOptions(topK: 1), [(0, 1)])
        assertCandidates([5, 5, 5, 1, 5], SamplingOptions(topK: 3), [(0, 1.0 / 3), (1, 1.0 / 3), (2, 1.0 / 3)])
        XCTAssertEqual(candidates([0, 1], SamplingOptions(topK: 9)).count, 2)
        // A long row exercises the selection path against a plain sort.
        let row = (0..<1000).map { Float(CounterRandom(seed: 3).uniform(stream: 0, counter: $0)) }
        let expected = (0..<1000).sorted { row[$0] > row[$1] }.prefix(37)
        XCTAssertEqual(candidates(row, SamplingOptions(topK: 37)).map(\.token), Array(expected))
    }

    func testTopP() {
        let logits = [0.5, 0.3, 0.15, 0.05].map { Float(log($0)) }
        assertCandidates(logits, SamplingOptions(topP: 0.7), [(0, 0.5 / 0.8), (1, 0.3 / 0.8)])
        assertCandidates(logits, SamplingOptions(topP: 0.4), [(0, 1)])
        assertCandidates(logits, SamplingOptions(topP: 0.9), [(0, 0.5 / 0.95), (1, 0.3 / 0.95), (2, 0.15 / 0.95)])
        // Top-k first, then top-p over the survivors' renormalised mass (0.5 / 0.8 > 0.6).
        assertCandidates(logits, SamplingOptions(topK: 2, topP: 0.6), [(0, 1)])
        // Order is by likelihood even when ids are not.
        assertCandidates([Float(log(0.1)), Float(log(0.6)), Float(log(0.3))], SamplingOptions(topP: 0.8),
                         [(1, 0.6 / 0.9), (2, 0.3 / 0.9)])
    }

    func testTemperature() {
        // exp(ln 4 / 2) = 2: probabilities 1/3, 2/3.
        assertCandidates([0, Float(log(4.0))], SamplingOptions(temperature: 2), [(0, 1.0 / 3), (1, 2.0 / 3)])
        // Low temperature sharpens towards the argmax.
        XCTAssertGreaterThan(candidates([0, 1], SamplingOptions(temperature: 0.01)).last?.probability ?? 0, 0.9999)
    }

    func testDrawIsInverseCDF() {
        let logits = [0.5, 0.3, 0.15, 0.05].map { Float(log($0)) }
        func draw(_ u: Double, _ options: SamplingOptions = SamplingOptions()) -> Int {
            logits.withUnsafeBufferPointer { Sampler.sample($0, options: options, uniform: u) }
        }
        XCTAssertEqual([0.0, 0.49, 0.51, 0.79, 0.81, 0.94, 0.96, 0.999999].map { draw($0) }, [0, 0, 1, 1, 2, 2, 3, 3])
        XCTAssertEqual([0.0, 0.5, 0.999].map { draw($0, SamplingOptions(topK: 1)) }, [0, 0, 0])
        XCTAssertEqual(draw(0.7, SamplingOptions(topP: 0.7)), 1)  // 0.625 | 0.375
    }

    func testCounterRandom() {
        let r = CounterRandom(seed: 42)
        XCTAssertEqual(r.uniform(stream: 3, counter: 9), CounterRandom(seed: 42).uniform(stream: 3, counter: 9))
        XCTAssertNotEqual(r.uniform(stream: 3, counter: 9), r.uniform(stream: 4, counter: 9))
        XCTAssertNotEqual(r.uniform(stream: 3, counter: 9), r.uniform(stream: 3, counter: 10))
        XCTAssertNotEqual(r.uniform(stream: 3, counter: 9), CounterRandom(seed: 43).uniform(stream: 3, counter: 9))
        let draws = (0..<20000).map { r.uniform(stream: $0 % 7, counter: $0 / 7) }
        XCTAssertTrue(draws.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(draws.reduce(0, +) / Double(draws.count), 0.5, accuracy: 0.01)
        XCTAssertEqual(Double(draws.filter { $0 < 0.1 }.count) / Double(draws.count), 0.1, accuracy: 0.01)
    }

    func testBadSamplingOptions() {
        assertInvalid(try SamplingOptions(temperature: 0).validate(), "temperature")
        assertInvalid(try SamplingOptions(temperature: -1).validate(), "temperature")
        assertInvalid(try SamplingOptions(temperature: .nan).validate(), "temperature")
        assertInvalid(try SamplingOptions(topK: -1).validate(), "top_k")
        assertInvalid(try SamplingOptions(topP: 0).validate(), "top_p")
        assertInvalid(try SamplingOptions(topP: 1.01).validate(), "top_p")
        XCTAssertNoThrow(try SamplingOptions(temperature: 0.5, topK: 3, topP: 1).validate())
    }

    // MARK: The generation loop (mock transformer)

    func generate(_ options: GenerationOptions, on predictor: MockPredictor = MockPredictor(), threads: Int = 1,
                  text: [Int32]? = nil, progress: ProgressHandler? = nil, cancellation: CancellationFlag? = nil) throws -> [Int32] {
        try ImageTokenGenerator.generate(predictor, text: text ?? prompt, options: options, pool: ThreadPool(threads: threads),
                                         progress: progress, cancellation: cancellation).tokens
    }

    func testOnePrefillThenOneStepPerToken() throws {
        let mock = MockPredictor()
        var reported: [Int] = []
        let tokens = try generate(GenerationOptions(count: 2, seed: 1), on: mock, progress: { step, total in
            XCTAssertEqual(total, 9)
            reported.append(step)
            return true
        })
        XCTAssertEqual(tokens.count, 2 * 9)
        XCTAssertTrue(tokens.allSatisfy { $0 >= 0 && $0 < 6 })
        XCTAssertEqual(mock.prefills, 1)
        XCTAssertEqual(mock.steps, 8)
        XCTAssertEqual(reported, Array(0...9))
    }

    func testDeterministicAcrossThreadsAndRuns() throws {
        let options = GenerationOptions(count: 5, seed: 99, sampling: SamplingOptions(temperature: 1.3, topK: 4, topP: 0.95))
        let first = try generate(options, threads: 1)
        XCTAssertEqual(try generate(options, threads: 1), first)
        XCTAssertEqual(try generate(options, threads: 3), first)
        XCTAssertEqual(try generate(options, threads: 8), first)
        var other = options
        other.seed = 100
        XCTAssertNotEqual(try generate(other), first)
        // Candidate i does not depend on how many candidates are drawn with it.
        other = options
        other.count = 2
        XCTAssertEqual(try generate(other), Array(first.prefix(18)))
        // Candidates of one call differ from each other.
        XCTAssertNotEqual(Array(first[0..<9]), Array(first[9..<18]))
    }

    func testGreedyIsArgmaxOfFullForward() throws {
        let mock = MockPredictor()
        let tokens = try generate(GenerationOptions(count: 2, seed: 5, sampling: SamplingOptions(topK: 1)), on: mock)
        for c in 0..<2 {
            var sequence = prompt
            for i in 0..<9 {
                let logits = mock.fullLogits([sequence]).scalars[5...]
                let argmax = logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }! - 5
                XCTAssertEqual(Int(tokens[c * 9 + i]), argmax, "candidate \(c) token \(i)")
                sequence.append(tokens[c * 9 + i])
            }
        }
    }

    func testGuidanceMixesConditionalAndEmptyCaption() throws {
        // Greedy with guidance == argmax of null + (cond - null) * scale from two separate passes.
        let mock = MockPredictor()
        let scale: Float = 3
        let tokens = try generate(GenerationOptions(count: 1, sampling: SamplingOptions(topK: 1), condScale: scale), on: mock)
        var cond = prompt, null: [Int32] = [0, 0, 0, 0]
        for i in 0..<9 {
            let c = mock.fullLogits([cond]).scalars[5...].map { $0 }
            let u = mock.fullLogits([null]).scalars[5...].map { $0 }
            let mixed = zip(c, u).map { $1 + ($0 - $1) * scale }
            let argmax = mixed.indices.max { mixed[$0] < mixed[$1] || (mixed[$0] == mixed[$1] && $0 > $1) }!
            XCTAssertEqual(Int(tokens[i]), argmax, "token \(i)")
            cond.append(tokens[i])
            null.append(tokens[i])
        }
        XCTAssertNotEqual(tokens, try generate(GenerationOptions(count: 1, sampling: SamplingOptions(topK: 1)), on: mock))
    }

    func testPrimingKeepsGivenRows() throws {
        let mock = MockPredictor()
        let prime: [Int32] = [5, 4, 3]
        var reported: [Int] = []
        let tokens = try generate(GenerationOptions(count: 3, seed: 2, primeTokens: prime, primeRows: 1), on: mock,
                                  progress: { step, total in reported.append(step); XCTAssertEqual(total, 6); return true })
        for c in 0..<3 { XCTAssertEqual(Array(tokens[(c * 9)..<(c * 9 + 3)]), prime) }
        XCTAssertEqual(mock.steps, 5)
        XCTAssertEqual(reported, Array(0...6))
        // The primed rows condition the rest: greedy continues from the primed sequence.
        let greedy = try generate(GenerationOptions(sampling: SamplingOptions(topK: 1), primeTokens: prime, primeRows: 1), on: mock)
        let logits = mock.fullLogits([prompt + prime]).scalars[5...].map { $0 }
        XCTAssertEqual(Int(greedy[3]), logits.indices.max { logits[$0] < logits[$1] }!)
    }

    func testCancellationStopsWithinOneStep() throws {
        let mock = MockPredictor()
        XCTAssertThrowsError(try generate(GenerationOptions(count: 2), on: mock, progress: { step, _ in step < 3 })) { error in
            XCTAssertEqual(error as? DalleError, .cancelled)
        }
        XCTAssertEqual(mock.steps, 2)  // tokens 1, 2, 3 drawn; no step after the refusal
        let flag = CancellationFlag()
        let flagged = MockPredictor()
        XCTAssertThrowsError(try generate(GenerationOptions(), on: flagged, progress: { step, _ in
            if step == 4 { flag.request() }
            return true
        }, cancellation: flag)) { XCTAssertEqual($0 as? DalleError, .cancelled) }
        XCTAssertEqual(flagged.steps, 4)
    }

    func testCandidateGroupsReportOnTheCallingThreadAndStopTogether() throws {
        // Sixteen candidates of a small model: four groups of four, one prefill each, on four
        // threads at once or on two in two rounds; progress comes from each round's first group,
        // on the thread that called, each step once.
        for threads in [4, 2] {
            let mock = MockPredictor(), caller = pthread_self()
            var reported: [Int] = []
            _ = try generate(GenerationOptions(count: 16, seed: 3), on: mock, threads: threads, progress: { step, _ in
                XCTAssertNotEqual(pthread_equal(pthread_self(), caller), 0)
                reported.append(step)
                return true
            })
            XCTAssertEqual(mock.prefills, 4)
            XCTAssertEqual(mock.steps, 4 * 8)
            XCTAssertEqual(reported, Array(0...9), "\(threads) threads")
        }
        // A model larger than the caches decodes all candidates as one group.
        let large = MockPredictor()
        large.stepWeightBytes = ImageTokenGenerator.sharedStepWeightBytes + 1
        XCTAssertEqual(try generate(GenerationOptions(count: 16, seed: 3), on: large, threads: 2),
                       try generate(GenerationOptions(count: 16, seed: 3), on: MockPredictor(), threads: 2))
        XCTAssertEqual(large.prefills, 1)
        XCTAssertEqual(large.steps, 8)
        // A failure in any group is the call's error; a refusal from the callback stops them all.
        let failing = MockPredictor()
        failing.failingStep = 6
        XCTAssertThrowsError(try generate(GenerationOptions(count: 4), on: failing, threads: 4)) { error in
            XCTAssertEqual(error as? DalleError, .invalidArgument("mock failure at step 6"))
        }
        let refused = MockPredictor()
        XCTAssertThrowsError(try generate(GenerationOptions(count: 4), on: refused, threads: 4, progress: { step, _ in step < 3 })) {
            XCTAssertEqual($0 as? DalleError, .cancelled)
        }
    }

    func testBadOptions() {
        assertInvalid(try generate(GenerationOptions(count: 0)), "count")
        assertInvalid(try generate(GenerationOptions(count: GenerationOptions.maxCount + 1)), "count")
        assertInvalid(try generate(GenerationOptions(sampling: SamplingOptions(temperature: 0))), "temperature")
        assertInvalid(try generate(GenerationOptions(sampling: SamplingOptions(topP: 2))), "top_p")
        assertInvalid(try generate(GenerationOptions(condScale: .infinity)), "cond_scale")
        assertInvalid(try generate(GenerationOptions(primeTokens: [1, 2], primeRows: 1)), "need 3 ids")
        assertInvalid(try generate(GenerationOptions(primeTokens: [Int32](repeating: 0, count: 9), primeRows: 3)), "prime_rows")
        assertInvalid(try generate(GenerationOptions(primeRows: -1)), "prime_rows")
        assertInvalid(try generate(GenerationOptions(primeTokens: [1, 6, 2], primeRows: 1)), "prime token 1 is 6")
        assertInvalid(try generate(GenerationOptions(), text: [1, 2]), "token positions")
    }
}

/// Generation with the real transformer (random weights), a tiny tokenizer and a tiny dVAE,
/// through DalleSession and the C API.
final class TransformerGenerationTests: XCTestCase {
    /// 32x32 images, 4x4 token grids, 24 image tokens.
    static let dvae = DVAEConfig(imageSize: 32, groupCount: 4, hiddenChannels: 8, blocksPerGroup: 1,
                                 inputChannels: 3, outputChannels: 3, vocabSize: 24, initChannels: 8)
    static let merges: [(String, String)] = [("r", "e"), ("re", "d</w>"), ("b", "a"), ("ba", "l"), ("bal", "l</w>")]
    static let config = TransformerConfig(dim: 32, depth: 3, heads: 2, dimHead: 16, textSeqLen: 6, numTextTokens: 520,
                                          numImageTokens: 24, imageFmapSize: 4, attnTypes: [.axialRow, .axialCol, .convLike])
    static let transformer: DalleTransformer = {
        (try? DalleTransformer(config: config, weights: DalleTransformer.randomWeights(config: config, seed: 11)))!
    }()

    /// A bundle file with a dVAE, a tokenizer and a transformer (written once per run).
    static let bundlePath: String = {
        let path = "/tmp/libdalle-generate-test-\(getpid()).safetensors"
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "libdalle", "format_version": "1", "components": "dvae,tokenizer,transformer"]
        for (key, value) in dvae.metadata.merging(config.metadata, uniquingKeysWith: { a, _ in a }) { writer.metadata[key] = value }
        let tensors = DVAE.randomWeights(config: dvae, seed: 3).tensors
            .merging(DalleTransformer.randomWeights(config: config, seed: 11).tensors, uniquingKeysWith: { a, _ in a })
        for (name, tensor) in tensors { try? writer.add(name, tensor) }
        try? Tokenizer(merges: merges).write(to: &writer)
        try? writer.write(to: path)
        return path
    }()

    override class func tearDown() { unlink(bundlePath) }

    let text: [Int32] = [300, 17, 42, 0, 0, 0]

    func generate(_ options: GenerationOptions, threads: Int = 1, text: [Int32]? = nil) throws -> [Int32] {
        try ImageTokenGenerator.generate(Self.transformer, text: text ?? self.text, options: options, pool: ThreadPool(threads: threads)).tokens
    }

    /// Image logits of the position after `image`, from a full (uncached) forward pass.
    func fullForward(text: [Int32], image: [Int32]) throws -> [Float] {
        let logits = try Self.transformer.logits(text: text, image: image, batch: 1, pool: ThreadPool(threads: 1))
        let (length, vocab) = (logits.shape[1], logits.shape[2])
        let row = (length - 1) * vocab + Self.config.textVocab
        return Array(logits.scalars[row..<(row + Self.config.numImageTokens)])
    }

    func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] || (v[$0] == v[$1] && $0 > $1) }! }

    func testGreedyIsArgmaxOfFullForward() throws {
        let tokens = try generate(GenerationOptions(count: 2, sampling: SamplingOptions(topK: 1)))
        XCTAssertEqual(tokens.count, 32)
        for c in 0..<2 {
            let grid = Array(tokens[(c * 16)..<((c + 1) * 16)])
            for i in 0..<16 {
                XCTAssertEqual(Int(grid[i]), argmax(try fullForward(text: text, image: Array(grid[0..<i]))), "candidate \(c) token \(i)")
            }
        }
    }

    func testGuidanceAgainstTwoForwardPasses() throws {
        let scale: Float = 2.5
        let tokens = try generate(GenerationOptions(count: 1, sampling: SamplingOptions(topK: 1), condScale: scale))
        let empty = [Int32](repeating: 0, count: 6)
        var differs = false
        for i in 0..<16 {
            let prefix = Array(tokens[0..<i])
            let cond = try fullForward(text: text, image: prefix), null = try fullForward(text: empty, image: prefix)
            XCTAssertEqual(Int(tokens[i]), argmax(zip(cond, null).map { $1 + ($0 - $1) * scale }), "token \(i)")
            differs = differs || argmax(cond) != Int(tokens[i])
        }
        XCTAssertTrue(differs, "guidance never changed a greedy choice: the test shows nothing")
    }

    /// The log-likelihoods are the mean log-softmax of an uncached forward pass at the drawn
    /// tokens, with the raw logits even when temperature and top-k shape the draw; primed rows
    /// do not count.
    func testLogLikelihoodsAreMeanLogSoftmaxOfTheDrawnTokens() throws {
        let prime: [Int32] = [1, 2, 3, 4]
        let options = GenerationOptions(count: 3, seed: 4, sampling: SamplingOptions(temperature: 1.7, topK: 20), primeTokens: prime, primeRows: 1)
        let sampled = try ImageTokenGenerator.generate(Self.transformer, text: text, options: options, pool: ThreadPool(threads: 2))
        XCTAssertEqual(sampled.logLikelihoods.count, 3)
        for c in 0..<3 {
            let grid = Array(sampled.tokens[(c * 16)..<((c + 1) * 16)])
            var total = 0.0
            for i in 4..<16 {
                let logits = try fullForward(text: text, image: Array(grid[0..<i]))
                let top = Double(logits.max()!)
                let logNormaliser = top + log(logits.reduce(0.0) { $0 + exp(Double($1) - top) })
                total += Double(logits[Int(grid[i])]) - logNormaliser
            }
            XCTAssertEqual(Double(sampled.logLikelihoods[c]), total / 12, accuracy: 1e-4, "candidate \(c)")
            XCTAssertLessThan(sampled.logLikelihoods[c], 0)
        }
        XCTAssertEqual(try ImageTokenGenerator.generate(Self.transformer, text: text, options: options, pool: ThreadPool(threads: 1)), sampled)
    }

    func testDeterministicAcrossThreadsRunsAndBatchSizes() throws {
        let options = GenerationOptions(count: 4, seed: 7, sampling: SamplingOptions(temperature: 1.5, topK: 12, topP: 0.9), condScale: 1.5)
        let one = try generate(options, threads: 1)
        XCTAssertEqual(try generate(options, threads: 1), one)
        XCTAssertEqual(try generate(options, threads: 2), one)
        XCTAssertEqual(try generate(options, threads: 5), one)
        var single = options
        single.count = 1
        XCTAssertEqual(try generate(single, threads: 2), Array(one.prefix(16)))
        XCTAssertEqual(Set(stride(from: 0, to: 64, by: 16).map { Array(one[$0..<($0 + 16)]) }).count, 4)
        // More rows than the streaming kernel takes at once (24 candidates and their unguided
        // twins): the same grids for any thread count.
        var many = options
        many.count = 24
        let manyOne = try generate(many, threads: 1)
        XCTAssertEqual(try generate(many, threads: 2), manyOne)
        XCTAssertEqual(try generate(many, threads: 3), manyOne)
    }

    func testPrimingKeepsRowsAndMatchesGreedyContinuation() throws {
        let prime: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8]
        let tokens = try generate(GenerationOptions(count: 2, sampling: SamplingOptions(topK: 1), primeTokens: prime, primeRows: 2))
        for c in 0..<2 { XCTAssertEqual(Array(tokens[(c * 16)..<(c * 16 + 8)]), prime) }
        XCTAssertEqual(Int(tokens[8]), argmax(try fullForward(text: text, image: prime)))
        XCTAssertEqual(Int(tokens[9]), argmax(try fullForward(text: text, image: prime + [tokens[8]])))
    }

    // MARK: DalleSession

    func session(threads: Int = 1) throws -> DalleSession {
        try DalleSession(model: try DalleModel(path: Self.bundlePath), threads: threads, seed: 5)
    }

    func testSessionGeneratesImagesAndReportsTruncation() throws {
        let s = try session()
        var tokenSteps: [Int] = [], decodeSteps: [Int] = []
        let result = try s.generate(prompt: "red ball", options: GenerationOptions(count: 2, seed: 9),
                                    tokenProgress: { step, total in XCTAssertEqual(total, 16); tokenSteps.append(step); return true },
                                    decodeProgress: { step, total in XCTAssertEqual(total, 2); decodeSteps.append(step); return true })
        XCTAssertEqual(tokenSteps, Array(0...16))
        XCTAssertEqual(decodeSteps, [0, 1, 2])
        XCTAssertEqual(result.tokens.count, 32)
        XCTAssertEqual(result.pixels.count, 2 * 32 * 32 * 3)
        XCTAssertEqual(result.pixels, try result.tokens.withUnsafeBufferPointer { try s.decode(tokens: $0, count: 2) })
        XCTAssertEqual(result.promptTokenCount, 2)  // "red</w>", "ball</w>"
        XCTAssertEqual(result.truncatedTokenCount, 0)
        XCTAssertEqual(result.seed, 9)
        // The same prompt and seed through the tokenizer by hand.
        let ids = try s.model.tokenizer!.tokenizeDALLE("red ball", textLength: 6).ids
        XCTAssertEqual(result.tokens, try ImageTokenGenerator.generate(Self.transformer, text: ids, options: GenerationOptions(count: 2, seed: 9), pool: s.pool).tokens)

        let long = try s.generate(prompt: "red ball red ball red ball red ball", options: GenerationOptions(), decodeImages: false)
        XCTAssertEqual(long.promptTokenCount, 6)
        XCTAssertEqual(long.truncatedTokenCount, 2)
        XCTAssertTrue(long.pixels.isEmpty)
        XCTAssertEqual(try s.generate(prompt: "", options: GenerationOptions(), decodeImages: false).promptTokenCount, 0)
    }

    func testSessionCancelAndMissingTransformer() throws {
        let s = try session()
        XCTAssertThrowsError(try s.generate(prompt: "red", options: GenerationOptions(), tokenProgress: { step, _ in
            if step == 3 { s.cancel() }
            return true
        })) { XCTAssertEqual($0 as? DalleError, .cancelled) }
        // The next call is not affected by the earlier cancel.
        XCTAssertNoThrow(try s.generate(prompt: "red", options: GenerationOptions(), decodeImages: false))

        let dvaeOnly = try DalleSession(model: try DalleModel(path: CAPITests.modelPath), threads: 1)
        XCTAssertThrowsError(try dvaeOnly.generate(prompt: "red", options: GenerationOptions())) { error in
            guard case .unsupported(let message)? = error as? DalleError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("no transformer"), message)
        }
    }
}

/// dalle_generate called as a C program calls it.
final class GenerateCAPITests: XCTestCase {
    override class func setUp() { DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE)) }

    var model: OpaquePointer? = nil
    var ctx: OpaquePointer? = nil

    override func setUpWithError() throws {
        XCTAssertEqual(dalle_model_load_file(TransformerGenerationTests.bundlePath, nil, &model), dalle_status(DALLE_OK),
                       String(cString: dalle_last_error()))
        var params = DalleCAPI.dalle_context_default_params()
        params.n_threads = 2
        params.seed = 77
        XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK))
    }

    override func tearDown() {
        dalle_context_free(ctx)
        dalle_model_free(model)
    }

    func message() -> String { String(cString: dalle_context_last_error(ctx)) }

    func testGenerateImagesTokensAndInfo() throws {
        var params = DalleCAPI.dalle_generate_default_params()
        XCTAssertEqual(params.struct_size, UInt32(MemoryLayout<dalle_generate_params>.size))
        XCTAssertEqual(params.count, 1)
        XCTAssertEqual(params.seed, DALLE_SEED_RANDOM)
        XCTAssertEqual(params.temperature, 1)
        XCTAssertEqual(params.top_p, 1)
        XCTAssertEqual(params.cond_scale, 1)
        params.count = 3
        params.top_k = 8
        var images = dalle_image_batch(), tokens = dalle_tokens(), info = dalle_generate_info()
        info.struct_size = UInt32(MemoryLayout<dalle_generate_info>.size)
        XCTAssertEqual(dalle_generate(ctx, "red ball", &params, &images, &tokens, &info), dalle_status(DALLE_OK), message())
        defer { dalle_image_batch_free(&images); dalle_tokens_free(&tokens) }
        XCTAssertEqual(images.count, 3)
        XCTAssertEqual(images.images?[2].width, 32)
        XCTAssertEqual(images.images?[2].channels, 3)
        XCTAssertEqual([tokens.count, tokens.rows, tokens.cols], [3, 4, 4])
        XCTAssertEqual(info.seed, 77)  // DALLE_SEED_RANDOM: the context's seed
        XCTAssertEqual([info.prompt_tokens, info.truncated_tokens, info.generated_tokens], [2, 0, 16])
        let ids = Array(UnsafeBufferPointer(start: tokens.data, count: 48))

        // The same images through the Swift API, and the pixels decode from the tokens.
        let session = try DalleSession(model: try DalleModel(path: TransformerGenerationTests.bundlePath), threads: 1)
        let expected = try session.generate(prompt: "red ball", options: GenerationOptions(count: 3, seed: 77, sampling: SamplingOptions(topK: 8)))
        XCTAssertEqual(ids, expected.tokens)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: images.images?[1].data, count: 32 * 32 * 3)),
                       Array(expected.pixels[(32 * 32 * 3)..<(2 * 32 * 32 * 3)]))

        // Tokens only, priming, truncation, a NULL params struct.
        var primed = DalleCAPI.dalle_generate_default_params()
        let prime: [Int32] = [1, 2, 3, 4]
        primed.prime_rows = 1
        var only = dalle_tokens()
        prime.withUnsafeBufferPointer { primed.prime_tokens = $0.baseAddress
            XCTAssertEqual(dalle_generate(ctx, "red ball red ball red ball red", &primed, nil, &only, &info), dalle_status(DALLE_OK), message())
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: only.data, count: 4)), prime)
        XCTAssertEqual([info.prompt_tokens, info.truncated_tokens, info.generated_tokens], [6, 1, 12])
        dalle_tokens_free(&only)
        XCTAssertEqual(dalle_generate(ctx, "", nil, nil, &only, nil), dalle_status(DALLE_OK), message())
        dalle_tokens_free(&only)
        XCTAssertNil(only.data)
    }

    func testCancelReturnsCancelledWithOutputsZeroed() {
        var params = DalleCAPI.dalle_generate_default_params()
        params.count = 2
        var calls = 0
        params.progress = { phase, step, _, data in
            let counter = data!.assumingMemoryBound(to: Int.self)
            counter.pointee += 1
            return !(phase == dalle_phase(DALLE_PHASE_GENERATE) && step == 5)
        }
        var images = dalle_image_batch(), tokens = dalle_tokens()
        withUnsafeMutablePointer(to: &calls) { params.progress_user_data = UnsafeMutableRawPointer($0)
            XCTAssertEqual(dalle_generate(ctx, "red", &params, &images, &tokens, nil), dalle_status(DALLE_CANCELLED))
        }
        XCTAssertEqual(calls, 6)  // steps 0 ... 5
        XCTAssertNil(images.images)
        XCTAssertNil(tokens.data)
        XCTAssertTrue(message().contains("cancelled"), message())

        // dalle_cancel from the callback's thread; the next call runs normally.
        params.progress = { _, step, _, data in
            if step == 2 { DalleCAPI.dalle_cancel(OpaquePointer(data)) }
            return true
        }
        params.progress_user_data = UnsafeMutableRawPointer(ctx)
        XCTAssertEqual(dalle_generate(ctx, "red", &params, &images, &tokens, nil), dalle_status(DALLE_CANCELLED))
        params.progress = nil
        XCTAssertEqual(dalle_generate(ctx, "red", &params, &images, &tokens, nil), dalle_status(DALLE_OK), message())
        dalle_image_batch_free(&images)
        dalle_tokens_free(&tokens)
    }

    func testBadInputs() {
        func expect(_ status: Int32, _ fragment: String, prompt: UnsafePointer<CChar>? = nil, _ edit: (inout dalle_generate_params) -> Void = { _ in },
                    images: Bool = true, tokens: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
            var params = DalleCAPI.dalle_generate_default_params()
            edit(&params)
            var outImages = dalle_image_batch(count: 9, images: nil), outTokens = dalle_tokens(count: 9, rows: 1, cols: 1, data: nil)
            let got = withUnsafeMutablePointer(to: &outImages) { i in
                withUnsafeMutablePointer(to: &outTokens) { t in
                    "red".withCString { dalle_generate(ctx, prompt ?? $0, &params, images ? i : nil, tokens ? t : nil, nil) }
                }
            }
            XCTAssertEqual(got, dalle_status(status), message(), file: file, line: line)
            XCTAssertTrue(message().contains(fragment), "'\(message())' lacks '\(fragment)'", file: file, line: line)
            XCTAssertEqual(outImages.count, images ? 0 : 9, file: file, line: line)
            XCTAssertEqual(outTokens.count, tokens ? 0 : 9, file: file, line: line)
        }
        let invalid = Int32(DALLE_INVALID_ARGUMENT)
        expect(invalid, "count is 0") { $0.count = 0 }
        expect(invalid, "count is 100000") { $0.count = 100_000 }
        expect(invalid, "temperature") { $0.temperature = 0 }
        expect(invalid, "temperature") { $0.temperature = -2 }
        expect(invalid, "top_p") { $0.top_p = 0 }
        expect(invalid, "top_p") { $0.top_p = 1.5 }
        expect(invalid, "top_k") { $0.top_k = -1 }
        expect(invalid, "cond_scale") { $0.cond_scale = .nan }
        expect(invalid, "struct_size") { $0.struct_size = 12 }
        expect(invalid, "prime_tokens is NULL") { $0.prime_rows = 2 }
        expect(invalid, "prime_rows is 4") { $0.prime_rows = 4; $0.prime_tokens = UnsafePointer(bitPattern: 16) }
        expect(invalid, "both NULL", images: false, tokens: false)
        let bad: [CChar] = [0x72, CChar(bitPattern: 0xC3), 0x28, 0]
        bad.withUnsafeBufferPointer { expect(invalid, "UTF-8", prompt: $0.baseAddress) }
        XCTAssertEqual(dalle_generate(nil, "red", nil, nil, nil, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        var tokens = dalle_tokens()
        XCTAssertEqual(dalle_generate(ctx, nil, nil, nil, &tokens, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        var info = dalle_generate_info()  // struct_size 0
        XCTAssertEqual(dalle_generate(ctx, "red", nil, nil, &tokens, &info), dalle_status(DALLE_INVALID_ARGUMENT))

        // A model without a transformer.
        var dvaeOnly: OpaquePointer? = nil, dvaeCtx: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(CAPITests.modelPath, nil, &dvaeOnly), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_context_create(dvaeOnly, nil, &dvaeCtx), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_generate(dvaeCtx, "red", nil, nil, &tokens, nil), dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(String(cString: dalle_context_last_error(dvaeCtx)).contains("no transformer"))
        dalle_context_free(dvaeCtx)
        dalle_model_free(dvaeOnly)
    }
}

/// Parity with DALLE-pytorch 1.6.6 (tools/make_golden_generate.py): prompt ids, greedy tokens,
/// guided greedy tokens and primed greedy tokens for a random-weight model with a DiscreteVAE.
final class GenerationGoldenTests: XCTestCase {
    static let directory = CAPITests.repoRoot + "/Tests/DalleCoreTests/Golden/generate/"

    func testGreedyGuidedAndPrimedMatchDALLEPytorch() throws {
        let ref = try SafetensorsFile(path: Self.directory + "ref.safetensors")
        let session = try DalleSession(model: try DalleModel(path: Self.directory + "model.safetensors"), threads: 2)
        let prompts = (ref.metadata["prompts"] ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let scale = try XCTUnwrap(Float(ref.metadata["cond_scale"] ?? ""))
        let primeRows = try XCTUnwrap(Int(ref.metadata["prime_rows"] ?? ""))
        func ints(_ name: String) throws -> [Int32] { try ref.tensor(name).scalars.map { Int32($0) } }
        let (text, greedy, guided, primed) = (try ints("text"), try ints("greedy"), try ints("guided"), try ints("primed"))
        let (tsl, isl) = (text.count / prompts.count, greedy.count / prompts.count)
        XCTAssertEqual(prompts.count, 3)

        let tokenizer = try XCTUnwrap(session.model.imageTokenizer)
        let prime = Array(try tokenizer.encode(try ref.tensor("prime_pixels"), pool: session.pool).prefix(primeRows * tokenizer.gridSize))
        let greedyOptions = GenerationOptions(sampling: SamplingOptions(topK: 1))
        for (p, prompt) in prompts.enumerated() {
            let ids = try session.model.requireGenerator().encodePrompt(prompt).ids
            XCTAssertEqual(ids, Array(text[(p * tsl)..<((p + 1) * tsl)]), "prompt \(p) ids")
            func expected(_ all: [Int32]) -> [Int32] { Array(all[(p * isl)..<((p + 1) * isl)]) }
            let plain = try session.generate(prompt: prompt, options: greedyOptions, decodeImages: false).tokens
            XCTAssertEqual(plain, expected(greedy), "greedy, prompt \(p)")
            var options = greedyOptions
            options.condScale = scale
            XCTAssertEqual(try session.generate(prompt: prompt, options: options, decodeImages: false).tokens, expected(guided), "guided, prompt \(p)")
            options = greedyOptions
            (options.primeTokens, options.primeRows) = (prime, primeRows)
            XCTAssertEqual(try session.generate(prompt: prompt, options: options, decodeImages: false).tokens, expected(primed), "primed, prompt \(p)")
        }
    }
}
