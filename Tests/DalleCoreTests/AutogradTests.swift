import XCTest
@testable import DalleCore

/// Every differentiable operation against central finite differences, and the trainable
/// models' forward passes against the inference models on the same weights.
final class AutogradTests: XCTestCase {
    let pool = ThreadPool(threads: 2)

    /// Random values, seeded.
    func randomValues(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in scale * Float(rng.nextGaussian()) }
    }

    /// Checks d(loss)/d(input) for every input against finite differences at `probes`
    /// coordinates each, where loss = Σ output · R for a fixed random R (or the output itself
    /// when it is a scalar).
    func checkGradients(_ inputs: [Variable], probes: Int = 12, step: Float = 1e-2, tolerance: Float = 2e-2,
                        file: StaticString = #filePath, line: UInt = #line, _ f: (Tape, [Variable]) throws -> Variable) throws {
        func loss(_ tape: Tape) throws -> (Variable, Variable) {
            let out = try f(tape, inputs)
            if out.count == 1 { return (out, out) }
            let r = randomValues(out.count, seed: 99)
            let scalar = tape.record([zip(out.value, r).reduce(0) { $0 + $1.0 * $1.1 }], shape: [], inputs: [out]) { node in
                out.accumulateGrad { d in for i in 0..<r.count { d[i] += node.grad[0] * r[i] } }
            }
            return (scalar, out)
        }
        for v in inputs { v.zeroGrad() }
        let tape = Tape(pool: pool)
        let (l, _) = try loss(tape)
        tape.backward(from: l)
        for (k, v) in inputs.enumerated() where v.requiresGrad {
            let analytic = v.grad.isEmpty ? [Float](repeating: 0, count: v.count) : v.grad
            var rng = SplitMix64(seed: UInt64(k + 7))
            for _ in 0..<min(probes, v.count) {
                let i = Int(rng.next() % UInt64(v.count))
                let saved = v.value[i]
                v.value[i] = saved + step
                let plus = try loss(Tape(pool: pool)).0.value[0]
                v.value[i] = saved - step
                let minus = try loss(Tape(pool: pool)).0.value[0]
                v.value[i] = saved
                let numeric = (plus - minus) / (2 * step)
                let scale = max(1, abs(numeric), abs(analytic[i]))
                XCTAssertLessThanOrEqual(abs(numeric - analytic[i]) / scale, tolerance,
                                         "input \(k) [\(i)]: analytic \(analytic[i]) vs numeric \(numeric)", file: file, line: line)
            }
        }
    }

    func param(_ shape: [Int], seed: UInt64, scale: Float = 1, offset: Float = 0) -> Variable {
        .parameter(randomValues(shape.reduce(1, *), seed: seed, scale: scale).map { $0 + offset }, shape: shape)
    }

    func testLinearMatmulAndGather() throws {
        try checkGradients([param([5, 7], seed: 1), param([4, 7], seed: 2), param([4], seed: 3)]) { t, v in t.linear(v[0], v[1], v[2]) }
        try checkGradients([param([6, 3], seed: 4), param([3, 5], seed: 5)]) { t, v in t.matmul(v[0], v[1]) }
        try checkGradients([param([5, 4], seed: 6)]) { t, v in t.gather(v[0], rows: [3, 0, 3, 4]) }
        try checkGradients([param([2, 3, 4], seed: 7), param([2, 2, 4], seed: 8)]) { t, v in t.interleave(v[0], v[1], sequences: 2) }
    }

    func testElementwise() throws {
        try checkGradients([param([3, 8], seed: 10), param([3, 8], seed: 11)]) { t, v in t.add(v[0], v[1], scale: 0.3) }
        try checkGradients([param([4, 6], seed: 12), param([1, 1, 6], seed: 13)]) { t, v in t.scaleFeatures(v[0], v[1]) }
        try checkGradients([param([3, 10], seed: 14)]) { t, v in t.geglu(v[0]) }
        try checkGradients([param([3, 10], seed: 15)]) { t, v in t.quickGELU(v[0]) }
        try checkGradients([param([4, 9], seed: 16, scale: 2, offset: 1), param([9], seed: 17), param([9], seed: 18)]) { t, v in
            t.layerNorm(v[0], v[1], v[2])
        }
    }

    func testAttention() throws {
        let pattern = AttentionPattern.dalle(TransformerConfig(dim: 8, depth: 1, heads: 2, dimHead: 4, textSeqLen: 2, numTextTokens: 5,
                                                                numImageTokens: 6, imageFmapSize: 2, attnTypes: [.axialRow],
                                                                rotaryEmb: false, shiftTokens: false), type: .axialRow)
        try checkGradients([param([2 * pattern.length, 3 * 2 * 4], seed: 20)]) { t, v in
            t.attention(v[0], batch: 2, heads: 2, dimHead: 4, pattern: pattern)
        }
        try checkGradients([param([5, 3 * 6], seed: 21)]) { t, v in t.attention(v[0], batch: 1, heads: 3, dimHead: 2, pattern: .bidirectional(length: 5)) }
    }

    func testConvolutionPoolingUpsampling() throws {
        for (k, relu) in [(1, false), (3, true), (7, false)] {
            try checkGradients([param([2, 3, 6, 6], seed: 30, offset: 0.2), param([4, 3, k, k], seed: 31), param([4], seed: 32)]) { t, v in
                t.conv2d(v[0], v[1], v[2], reluInput: relu)
            }
        }
        try checkGradients([param([2, 3, 4, 6], seed: 33)]) { t, v in t.maxPool2x2(v[0]) }
        try checkGradients([param([2, 3, 3, 2], seed: 34)]) { t, v in t.upsample2x(v[0]) }
    }

    func testLosses() throws {
        try checkGradients([param([5, 9], seed: 40)]) { t, v in t.crossEntropy(v[0], rows: [0, 2, 4], targets: [3, 5, 7], columns: 2..<8) }
        try checkGradients([param([4, 6], seed: 41), param([4, 6], seed: 42), .parameter([1.2], shape: [])]) { t, v in
            t.contrastiveLoss(images: v[0], texts: v[1], logitScale: v[2])
        }
        try checkGradients([param([7, 6], seed: 48), param([4, 6], seed: 49), .parameter([1.2], shape: [])]) { t, v in
            t.contrastiveLoss(images: v[0], texts: v[1], logitScale: v[2])
        }
        try checkGradients([param([5, 6], seed: 52), param([8, 6], seed: 53), .parameter([1.2], shape: [])]) { t, v in
            t.contrastiveLoss(images: v[0], texts: v[1], pairs: 3, logitScale: v[2])
        }
        let noise = gumbelNoise(count: 2 * 5 * 2 * 2, seed: 3)
        try checkGradients([param([2, 5, 2, 2], seed: 43)]) { t, v in t.gumbelSoftmax(v[0], noise: noise, temperature: 0.7) }
        try checkGradients([param([2, 5, 2, 2], seed: 44)]) { t, v in t.klToUniform(v[0]) }
        try checkGradients([param([2, 5, 2, 2], seed: 47)]) { t, v in t.codeUsageKL(v[0]) }
        let target = randomValues(2 * 3 * 2 * 2, seed: 45).map { 0.1 + 0.8 / (1 + expf(-$0)) }
        try checkGradients([param([2, 6, 2, 2], seed: 46)], step: 1e-3) { t, v in t.logitLaplaceNLL(v[0], target: target) }
        try checkGradients([.parameter([0.5], shape: []), .parameter([2], shape: [])]) { t, v in t.weightedSum([(v[0], 0.25), (v[1], 3)]) }
    }

    /// Images and texts past the pairs are hard negatives: an image joins each paired text's
    /// softmax over the images and has no row of its own, a text joins each paired image's
    /// softmax over the texts and has no column; with none, the loss is the symmetric CLIP loss.
    func testContrastiveLossWithHardNegatives() throws {
        let e = 5, n = 3, m = 5, t = 6, scale: Float = 2.5
        let images = randomValues(m * e, seed: 50), texts = randomValues(t * e, seed: 51)
        func unit(_ x: [Float], _ r: Int) -> [Float] {
            let row = Array(x[(r * e)..<((r + 1) * e)]), norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return row.map { $0 / norm }
        }
        func logit(_ i: Int, _ j: Int) -> Float { scale * zip(unit(images, i), unit(texts, j)).reduce(0) { $0 + $1.0 * $1.1 } }
        func logSoftmax(_ values: [Float], _ k: Int) -> Float { values[k] - logf(values.reduce(0) { $0 + expf($1) }) }
        func expected(images count: Int, texts textCount: Int) -> Float {
            var total: Float = 0
            for i in 0..<n { total -= logSoftmax((0..<textCount).map { logit(i, $0) }, i) }
            for j in 0..<n { total -= logSoftmax((0..<count).map { logit($0, j) }, j) }
            return total / Float(2 * n)
        }
        for (count, textCount) in [(n, n), (m, n), (n, t), (m, t)] {
            let tape = Tape(pool: ThreadPool(threads: 1))
            let loss = tape.contrastiveLoss(images: .constant(Array(images[0..<(count * e)]), shape: [count, e]),
                                            texts: .constant(Array(texts[0..<(textCount * e)]), shape: [textCount, e]),
                                            pairs: n, logitScale: .constant([logf(scale)], shape: []))
            XCTAssertEqual(loss.value[0], expected(images: count, texts: textCount), accuracy: 1e-5)
        }
        XCTAssertGreaterThan(expected(images: m, texts: n), expected(images: n, texts: n))
        XCTAssertGreaterThan(expected(images: n, texts: t), expected(images: n, texts: n))
    }

    /// The codebook-usage term is ln V when every position picks the same code and 0 when the
    /// positions share the codes equally, whatever each position's own confidence.
    func testCodeUsageKL() throws {
        let vocab = 4, tape = Tape(pool: ThreadPool(threads: 1))
        // [1, V, 2, 2]: channel-major, so position p's logit for code v is at v * 4 + p.
        func logits(_ code: (Int) -> Int) -> Variable {
            var l = [Float](repeating: 0, count: vocab * 4)
            for p in 0..<4 { l[code(p) * 4 + p] = 30 }
            return .constant(l, shape: [1, vocab, 2, 2])
        }
        XCTAssertEqual(tape.codeUsageKL(logits { _ in 2 }).value[0], logf(Float(vocab)), accuracy: 1e-4)
        XCTAssertEqual(tape.codeUsageKL(logits { $0 }).value[0], 0, accuracy: 1e-4)
        XCTAssertEqual(tape.codeUsageKL(.constant([Float](repeating: 0, count: vocab * 4), shape: [1, vocab, 2, 2])).value[0], 0, accuracy: 1e-6)
    }

    /// The dVAE's usage term enters the loss at its weight per token, and only while the batch
    /// uses fewer codes' worth than its floor; large logits at init make the batch's codes differ.
    func testDVAEUsageTermAndItsFloor() throws {
        let config = DVAEConfig(imageSize: 16, groupCount: 2, hiddenChannels: 8, blocksPerGroup: 1,
                                inputChannels: 3, outputChannels: 3, vocabSize: 16, initChannels: 8)
        let pool = ThreadPool(threads: 1)
        let images = randomValues(2 * 3 * 16 * 16, seed: 60).map { 1 / (1 + expf(-$0)) }
        let noise = gumbelNoise(count: 2 * 16 * 8 * 8, seed: 61)
        func loss(_ model: TrainableDVAE, weight: Float, floor: Float) throws -> TrainableDVAE.Loss {
            try model.loss(Tape(pool: pool), images: images, count: 2, noise: noise, temperature: 1, klWeight: 0,
                       usageWeight: weight, usageFloor: floor)
        }
        let hashed = try TrainableDVAE(config: config, seed: 1, initialisation: .init(logitStd: 1))
        let plain = try loss(hashed, weight: 0, floor: .infinity)
        XCTAssertGreaterThan(plain.usage, 0.05)
        XCTAssertEqual(try loss(hashed, weight: 2, floor: .infinity).total.value[0],
                       plain.total.value[0] + 2 * plain.usage * 64 / (3 * 16 * 16), accuracy: 1e-5)
        XCTAssertEqual(try loss(hashed, weight: 2, floor: 1).total.value[0], plain.total.value[0], accuracy: 1e-6)
        XCTAssertGreaterThan(plain.codesUsed, try loss(try TrainableDVAE(config: config, seed: 1), weight: 0, floor: .infinity).codesUsed)
    }

    func testKMeansFindsSeparatedClusters() throws {
        let means: [[Float]] = [[0, 0], [10, 0], [0, 10]]
        var rng = SplitMix64(seed: 70)
        let points = (0..<60).flatMap { p in means[p % 3].map { $0 + Float(rng.nextGaussian()) * 0.5 } }
        let kmeans = KMeans(points: points, dim: 2, k: 3, iterations: 5, seed: 1, pool: pool)
        let clusters = kmeans.assign(points, pool: pool).cluster
        XCTAssertEqual(Set(clusters).count, 3)
        for p in 0..<60 { XCTAssertEqual(clusters[p], clusters[p % 3], "point \(p)") }
        for c in 0..<3 {
            let mean = means[clusters[c]]
            XCTAssertEqual(kmeans.centroids[c * 2], mean[0], accuracy: 0.5)
            XCTAssertEqual(kmeans.centroids[c * 2 + 1], mean[1], accuracy: 0.5)
        }
    }

    /// A codebook seeded by k-means gives flat black, gray and white images (features on one ray
    /// with the reference initialisation) three different codes, and every image's cells the
    /// codes of their nearest centroids.
    func testDVAECodebookSeedingSeparatesBlackGrayAndWhite() throws {
        let config = DVAEConfig(imageSize: 16, groupCount: 2, hiddenChannels: 8, blocksPerGroup: 1,
                                inputChannels: 3, outputChannels: 3, vocabSize: 16, initChannels: 8)
        let pool = ThreadPool(threads: 1)
        let flat = [Float(20), 128, 245].flatMap { [Float](repeating: $0 / 255, count: 3 * 256) }
        let images = flat + randomValues(3 * 3 * 256, seed: 71).map { 1 / (1 + expf(-$0)) }
        let model = try TrainableDVAE(config: config, seed: 5)
        let before = try model.loss(Tape(pool: pool), images: images, count: 6, noise: [Float](repeating: 0, count: 6 * 16 * 64), temperature: 1, klWeight: 0)
        XCTAssertEqual(before.codesUsed, 1, "zero logits: one code everywhere")
        let used = try model.seedCodebook(images: images, count: 6, seed: 2, pool: pool)
        let after = try model.loss(Tape(pool: pool), images: images, count: 6, noise: [Float](repeating: 0, count: 6 * 16 * 64), temperature: 1, klWeight: 0)
        XCTAssertEqual(after.codesUsed, used)
        XCTAssertGreaterThan(used, 6)
        let centre = 3 * 8 + 3  // an interior cell of the 8x8 grid
        let flatCodes = (0..<3).map { after.codes[$0 * 64 + centre] }
        XCTAssertEqual(Set(flatCodes).count, 3, "black, gray and white share codes: \(flatCodes)")
    }

    func testStraightThroughGumbelSoftmax() throws {
        let noise = gumbelNoise(count: 2 * 5 * 3, seed: 8)
        var grads: [[Float]] = []
        var values: [[Float]] = []
        for hard in [false, true] {
            let logits = param([2, 5, 1, 3], seed: 51)
            let tape = Tape(pool: pool)
            let z = tape.gumbelSoftmax(logits, noise: noise, temperature: 0.5, hard: hard)
            let r = randomValues(z.count, seed: 3)
            let loss = tape.record([zip(z.value, r).reduce(0) { $0 + $1.0 * $1.1 }], shape: [], inputs: [z]) { node in
                z.accumulateGrad { d in for i in 0..<r.count { d[i] += node.grad[0] * r[i] } }
            }
            tape.backward(from: loss)
            grads.append(logits.grad)
            values.append(z.value)
        }
        for cell in 0..<6 {
            let (b, p) = (cell / 3, cell % 3)
            let soft = (0..<5).map { values[0][(b * 5 + $0) * 3 + p] }, hard = (0..<5).map { values[1][(b * 5 + $0) * 3 + p] }
            XCTAssertEqual(hard.filter { $0 == 1 }.count, 1)
            XCTAssertEqual(hard.firstIndex(of: 1), soft.firstIndex(of: soft.max() ?? 0), "the one-hot marks the soft sample's largest entry")
        }
        XCTAssertEqual(grads[0], grads[1], "the straight-through gradient is the soft sample's")
    }

    /// A whole model's gradient: a few coordinates of every kind of parameter.
    /// A forward pass over parameters the model never declared is an error naming the first
    /// missing one, not a computation on empty stand-ins.
    func testForwardOverAnotherModelsParametersThrows() throws {
        let c = TransformerConfig(dim: 8, depth: 1, heads: 2, dimHead: 4, textSeqLen: 3, numTextTokens: 7, numImageTokens: 5,
                                  imageFmapSize: 2, attnTypes: [.full])
        let transformer = try TrainableTransformer(config: c, seed: 4)
        let dvae = try TrainableDVAE(config: DVAEConfig(imageSize: 8, groupCount: 2, hiddenChannels: 4, blocksPerGroup: 1,
                                                        inputChannels: 3, outputChannels: 3, vocabSize: 6, initChannels: 5), seed: 1)
        XCTAssertThrowsError(try transformer.logits(Tape(pool: pool), text: [3, 5, 0], image: [0, 4, 2, 1], batch: 1,
                                                    weights: dvae.parameters)) { error in
            XCTAssertEqual(error as? DalleError, .invalidArgument("no parameter 'transformer.text_emb.weight' among the \(dvae.parameters.names.count) of this model"))
        }
    }

    func testModelGradients() throws {
        let dvae = try TrainableDVAE(config: DVAEConfig(imageSize: 8, groupCount: 2, hiddenChannels: 4, blocksPerGroup: 1,
                                                        inputChannels: 3, outputChannels: 3, vocabSize: 6, initChannels: 5), seed: 1)
        // Non-zero biases, so no ReLU input sits exactly at its kink (where finite differences see half a slope).
        for (name, v) in dvae.parameters.all where name.hasSuffix(".b") { v.setValue(randomValues(v.count, seed: 9, scale: 0.5)) }
        let images = randomValues(2 * 3 * 64, seed: 2).map { 1 / (1 + expf(-$0)) }
        let noise = gumbelNoise(count: 2 * 6 * 16, seed: 3)
        let dvaeParams = dvae.parameters.all.map(\.variable).filter { $0.count < 200 }
        try checkGradients(dvaeParams, probes: 2, step: 2e-3, tolerance: 5e-2) { t, _ in
            try dvae.loss(t, images: images, count: 2, noise: noise, temperature: 0.5, klWeight: 2).total
        }
        for (rotaryEmb, shiftTokens) in [(false, false), (false, true), (true, true)] {
            let c = TransformerConfig(dim: 8, depth: 2, heads: 2, dimHead: 6, textSeqLen: 3, numTextTokens: 7, numImageTokens: 5,
                                      imageFmapSize: 2, attnTypes: [.full, .axialCol], rotaryEmb: rotaryEmb, shiftTokens: shiftTokens)
            let transformer = try TrainableTransformer(config: c, seed: 4)
            try checkGradients(transformer.parameters.all.map(\.variable), probes: 2, tolerance: 3e-2) { t, _ in
                try transformer.loss(t, text: [3, 5, 0, 1, 0, 0], image: [0, 4, 2, 1, 3, 3, 0, 2], batch: 2).total
            }
        }
    }

    /// The token shift alone: every input feature's gradient, and which position each output takes.
    func testTokenShift() throws {
        let c = TransformerConfig(dim: 8, depth: 1, heads: 1, dimHead: 8, textSeqLen: 2, numTextTokens: 5, numImageTokens: 4,
                                  imageFmapSize: 3, rotaryEmb: false, shiftTokens: true)
        // Each input feature holds a code for its (sequence, position, feature).
        let length = c.seqLen, x = Variable.parameter((0..<(2 * length * 8)).map { Float($0) }, shape: [2 * length, 8])
        let y = Tape(pool: pool).shiftTokens(x, sequences: 2, config: c)
        func at(_ s: Int, _ p: Int, _ d: Int) -> Float { y.value[(s * length + p) * 8 + d] }
        func code(_ s: Int, _ p: Int, _ d: Int) -> Float { Float((s * length + p) * 8 + d) }
        XCTAssertEqual(at(1, 0, 0), 0, "the first text position has no predecessor")
        XCTAssertEqual(at(1, 2, 3), code(1, 1, 3), "text takes the previous position's first half")
        XCTAssertEqual(at(1, 2, 5), code(1, 2, 5), "the second half passes")
        // Image tokens start at textLen = 3: position 3 + 4 is row 1, column 1 of the 3x3 grid.
        XCTAssertEqual(at(0, 7, 1), code(0, 4, 1), "first quarter from the token above")
        XCTAssertEqual(at(0, 7, 2), code(0, 6, 2), "second quarter from the token to the left")
        XCTAssertEqual(at(0, 5, 1), 0, "no token above the first row")
        XCTAssertEqual(at(0, 6, 2), 0, "no token left of the first column")
        try checkGradients([Variable.parameter(randomValues(2 * length * 8, seed: 3), shape: [2 * length, 8])], probes: 24) { t, inputs in
            t.shiftTokens(inputs[0], sequences: 2, config: c)
        }
    }

    /// The rotary op alone: a rotation per pair (norms kept, position 0 of a zero table unchanged) and its gradient.
    func testRotary() throws {
        let length = 3, heads = 2, dimHead = 5, rot = 4, width = 3 * heads * dimHead
        let angles = randomValues(length * rot / 2, seed: 11).flatMap { [$0, $0] }
        let cos = angles.map { cosf($0) }, sin = angles.map { sinf($0) }
        let x = Variable.parameter(randomValues(2 * length * width, seed: 12), shape: [2 * length, width])
        let y = Tape(pool: pool).rotary(x, sequences: 2, heads: heads, dimHead: dimHead, cos: cos, sin: sin)
        for r in 0..<(2 * length) {
            for head in 0..<(3 * heads) {
                let base = r * width + head * dimHead
                for i in stride(from: 0, to: rot, by: 2) {
                    let before = hypotf(x.value[base + i], x.value[base + i + 1]), after = hypotf(y.value[base + i], y.value[base + i + 1])
                    XCTAssertEqual(before, after, accuracy: 1e-5, "a rotation keeps each pair's norm")
                }
                XCTAssertEqual(y.value[base + 4], x.value[base + 4], "features past the rotary ones pass through")
            }
        }
        try checkGradients([x], probes: 24) { t, inputs in t.rotary(inputs[0], sequences: 2, heads: heads, dimHead: dimHead, cos: cos, sin: sin) }
        // A head too narrow for rotary features (DALLE-pytorch rotates dimHead / 3 rounded down to pairs) is left alone.
        XCTAssertEqual(Tape(pool: pool).rotary(x, sequences: 2, heads: heads, dimHead: dimHead, cos: [], sin: []).value, x.value)
    }

    func testTransformerMatchesInference() throws {
        for (rotaryEmb, shiftTokens) in [(false, false), (false, true), (true, false), (true, true)] {
            let c = TransformerConfig(dim: 16, depth: 2, heads: 2, dimHead: 8, textSeqLen: 4, numTextTokens: 11, numImageTokens: 9,
                                      imageFmapSize: 3, attnTypes: [.full, .convLike], rotaryEmb: rotaryEmb, shiftTokens: shiftTokens)
            let trainable = try TrainableTransformer(config: c, seed: 5)
            let inference = try DalleTransformer(config: c, weights: InMemoryWeights(trainable.parameters.tensors))
            let text: [Int32] = [4, 2, 9, 0, 7, 0, 0, 0], image = (0..<18).map { Int32($0 % 9) }
            let expected = try inference.logits(text: text, image: image, batch: 2, pool: pool)
            let got = try trainable.logits(Tape(pool: pool), text: text, image: image, batch: 2)
            for r in 0..<(2 * c.seqLen) {
                let columns = r % c.seqLen < c.textSeqLen ? 0..<c.textVocab : c.textVocab..<c.totalTokens
                for j in columns {
                    XCTAssertEqual(got.value[r * c.totalTokens + j], expected.scalars[r * c.totalTokens + j], accuracy: 1e-4,
                                   "rotary_emb \(rotaryEmb), shift_tokens \(shiftTokens)")
                }
            }
        }
    }

    func testDVAEMatchesInference() throws {
        let config = DVAEConfig(imageSize: 16, groupCount: 3, hiddenChannels: 8, blocksPerGroup: 1,
                                inputChannels: 3, outputChannels: 3, vocabSize: 12, initChannels: 6)
        let trainable = try TrainableDVAE(config: config, seed: 6)
        let inference = try DVAE(config: config, weights: InMemoryWeights(trainable.parameters.tensors))
        let pixels = randomValues(2 * 3 * 256, seed: 7).map { 1 / (1 + expf(-$0)) }
        let expected = try inference.encoderLogits(Tensor(uncheckedShape: [2, 3, 16, 16], scalars: pixels), pool: pool)
        let mapped = pixels.map { 0.8 * $0 + 0.1 }
        let tape = Tape(pool: pool)
        let got = try trainable.encoderLogits(tape, features: try trainable.encoderFeatures(tape, mappedPixels: .constant(mapped, shape: [2, 3, 16, 16])))
        for (a, b) in zip(got.value, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        let tokens: [Int32] = (0..<32).map { Int32(($0 * 5) % 12) }
        var oneHot = [Float](repeating: 0, count: 2 * 12 * 16)
        for (i, t) in tokens.enumerated() { oneHot[((i / 16) * 12 + Int(t)) * 16 + i % 16] = 1 }
        let stats = try trainable.decoderStats(Tape(pool: pool), codes: .constant(oneHot, shape: [2, 12, 4, 4]))
        let expectedStats = try inference.decoderStats(tokens: tokens, count: 2, pool: pool)
        for (a, b) in zip(stats.value, expectedStats.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    }

    func testCLIPMatchesInference() throws {
        let config = CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 2, visionHeads: 2,
                                contextLength: 6, vocabSize: 20, textWidth: 12, textLayers: 2, textHeads: 3)
        let trainable = try TrainableCLIP(config: config, seed: 8)
        let inference = try CLIP(config: config, weights: InMemoryWeights(trainable.parameters.tensors))
        let pixels = randomValues(2 * 3 * 256, seed: 9)
        let tokens: [Int32] = [18, 3, 4, 19, 0, 0, 18, 5, 19, 0, 0, 0]
        let images = try inference.encodeImages(Tensor(uncheckedShape: [2, 3, 16, 16], scalars: pixels), pool: pool)
        let texts = try inference.encodeText([Array(tokens[0..<6]), Array(tokens[6..<12])], pool: pool)
        let tape = Tape(pool: pool)
        for (a, b) in zip(try trainable.encodeImages(tape, pixels: pixels, count: 2).value, images.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        for (a, b) in zip(try trainable.encodeText(tape, tokens: tokens, count: 2).value, texts.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    }

    func testGradientsDoNotDependOnThreadCount() throws {
        let c = TransformerConfig(dim: 16, depth: 1, heads: 2, dimHead: 8, textSeqLen: 3, numTextTokens: 9, numImageTokens: 8,
                                  imageFmapSize: 4, rotaryEmb: false, shiftTokens: false)
        var grads: [[Float]] = []
        for threads in [1, 2, 3] {
            let model = try TrainableTransformer(config: c, seed: 3)
            let tape = Tape(pool: ThreadPool(threads: threads))
            let image = (0..<32).map { Int32($0 % 8) }
            tape.backward(from: try model.loss(tape, text: [1, 2, 0, 3, 0, 0], image: image, batch: 2).total)
            grads.append(model.parameters.all.flatMap(\.variable.grad))
        }
        XCTAssertEqual(grads[0], grads[1])
        XCTAssertEqual(grads[0], grads[2])
    }
}
