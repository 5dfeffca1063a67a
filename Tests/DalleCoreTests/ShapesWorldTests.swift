import XCTest
@testable import DalleCore

/// The Shapes World (shared/shapes-world.md): caption grammar, rasterisation, layout constraints,
/// the training stream, the judge (passes, failures, noise) and the evaluation set.
final class ShapesWorldTests: XCTestCase {
    typealias W = ShapesWorld

    /// Every caption of the grammar.
    static let allCaptions: [W.Caption] = {
        var objects: [W.ObjectDescription] = []
        for colour in W.Colour.allCases {
            for shape in W.Shape.allCases {
                for size in [nil, W.Size.small, .large] { objects.append(W.ObjectDescription(colour: colour, shape: shape, size: size)) }
            }
        }
        var captions = objects.map { W.Caption.single($0) }
        for number in W.Number.allCases { captions += objects.map { .counting(number, $0) } }
        for a in objects {
            for relation in W.Relation.allCases {
                for b in objects where a.colourShape != b.colourShape { captions.append(.relation(a, relation, b)) }
            }
        }
        return captions
    }()

    // MARK: - Captions

    func testParseAndTextRoundTripOverTheWholeGrammar() throws {
        XCTAssertEqual(Self.allCaptions.count, 72 + 144 + 72 * 4 * 72 - 24 * 9 * 4)
        var texts = Set<String>()
        for caption in Self.allCaptions {
            XCTAssertEqual(try W.Caption.parse(caption.text), caption, caption.text)
            texts.insert(caption.text)
        }
        XCTAssertEqual(texts.count, Self.allCaptions.count)
    }

    func testCanonicalTexts() throws {
        XCTAssertEqual(W.Caption.single(.init(colour: .red, shape: .circle)).text, "a red circle")
        XCTAssertEqual(W.Caption.single(.init(colour: .blue, shape: .square, size: .large)).text, "a large blue square")
        XCTAssertEqual(W.Caption.counting(.two, .init(colour: .yellow, shape: .triangle)).text, "two yellow triangles")
        XCTAssertEqual(W.Caption.counting(.three, .init(colour: .black, shape: .circle, size: .small)).text, "three small black circles")
        let relation = W.Caption.relation(.init(colour: .red, shape: .circle), .leftOf, .init(colour: .blue, shape: .square, size: .large))
        XCTAssertEqual(relation.text, "a red circle to the left of a large blue square")
        XCTAssertEqual(try W.Caption.parse("a small green triangle below a white circle"),
                       .relation(.init(colour: .green, shape: .triangle, size: .small), .below, .init(colour: .white, shape: .circle)))
    }

    func testBadCaptionsAreRejectedSayingWhere() {
        let cases: [(String, String)] = [
            ("", "empty caption"),
            ("A red circle", "word 1 'A'"),
            ("a red circle.", "word 3 'circle.'"),
            ("a red circel", "word 3 'circel': expected a shape"),
            ("a  red circle", "double space after word 1"),
            (" a red circle", "starts with a space"),
            ("a red circle ", "ends with a space"),
            ("a red circles", "word 3 'circles'"),
            ("two red circle", "word 3 'circle': expected a shape (circles"),
            ("four red circles", "word 1 'four'"),
            ("a huge red circle", "word 2 'huge': expected a size (small, large) or a colour"),
            ("a small large circle", "word 3 'large': expected a colour"),
            ("a purple", "ends after word 2; expected a shape"),
            ("a red circle to the left of", "ends after word 7; expected 'a' after the relation"),
            ("a red circle to the left a blue square", "word 4 'to': expected the end of the caption or a relation"),
            ("a red circle beside a blue square", "word 4 'beside'"),
            ("a red circle above the blue square", "word 5 'the': expected 'a'"),
            ("a red circle to the left of a small red circle", "must differ in colour or shape"),
            ("two red circles above a blue square", "word 4 'above': expected the end"),
            ("a red circle above a blue square below a green triangle", "word 8 'below': expected the end"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try W.Caption.parse(text), text) { error in
                guard case DalleError.invalidArgument(let m) = error else { return XCTFail("\(text): \(error)") }
                XCTAssertTrue(m.contains(message), "\(text): '\(m)' does not say '\(message)'")
            }
        }
    }

    // MARK: - Rasterisation and layout

    func testShapeMasksFillTheirBoxAndClassifyAtBothSizes() throws {
        let expected: [W.Shape: [Int]] = [.square: [144, 576], .circle: [112, 448], .triangle: [84, 312]]
        for shape in W.Shape.allCases {
            for (k, size) in W.Size.allCases.enumerated() {
                let s = size.pixels, mask = W.mask(shape, side: s)
                XCTAssertEqual(mask.filter { $0 }.count, expected[shape]?[k], "\(shape) \(s)")
                // The mask touches all four sides of its box.
                XCTAssertTrue((0..<s).contains { mask[$0] } && (0..<s).contains { mask[(s - 1) * s + $0] })
                XCTAssertTrue((0..<s).contains { mask[$0 * s] } && (0..<s).contains { mask[$0 * s + s - 1] })
                let image = W.draw([W.PlacedObject(colour: .green, shape: shape, size: size, x: 10, y: 20)])
                let objects = try W.analyse(image).objects
                XCTAssertEqual(objects, [W.DetectedObject(
                    colour: .green, shape: shape, size: size, pixelCount: expected[shape]?[k] ?? 0,
                    x: 10, y: 20, width: s, height: s, centroidX: objects.first?.centroidX ?? 0, centroidY: objects.first?.centroidY ?? 0)])
            }
        }
        // Apex up: the triangle's top row is its narrowest (2 pixels), the bottom row full.
        let t = W.mask(.triangle, side: 12)
        XCTAssertEqual(t[0..<12].map { $0 ? 1 : 0 }, [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
        XCTAssertEqual(t[132..<144].filter { $0 }.count, 12)
    }

    func testLayoutsKeepMarginsSeparationAndRelationOrder() {
        for index in 0..<3000 {
            var rng = ShapesRandom(seed: 5, stream: .training, index: UInt64(index))
            let caption = W.randomCaption(mix: .standard, pairs: W.trainingPairs, rng: &rng)
            let placed = W.layout(caption, rng: &rng)
            XCTAssertEqual(placed.count, caption.objects.count)
            for (o, d) in zip(placed, caption.objects) {
                XCTAssertEqual(o.colour, d.colour)
                XCTAssertEqual(o.shape, d.shape)
                if let size = d.size { XCTAssertEqual(o.size, size) }
                XCTAssertTrue(o.x >= 2 && o.y >= 2 && o.x + o.size.pixels <= 62 && o.y + o.size.pixels <= 62, "\(caption) \(o)")
            }
            for i in 0..<placed.count {
                for j in 0..<i { XCTAssertGreaterThanOrEqual(placed[i].separation(from: placed[j]), 2, "\(caption)") }
            }
            if case .relation(_, let relation, _) = caption {
                let (a, b) = (placed[0], placed[1])
                switch relation {
                case .leftOf: XCTAssertGreaterThanOrEqual(b.x - (a.x + a.size.pixels), 2)
                case .rightOf: XCTAssertGreaterThanOrEqual(a.x - (b.x + b.size.pixels), 2)
                case .above: XCTAssertGreaterThanOrEqual(b.y - (a.y + a.size.pixels), 2)
                case .below: XCTAssertGreaterThanOrEqual(a.y - (b.y + b.size.pixels), 2)
                }
            }
        }
    }

    func testHardestCaptionsStillPlace() throws {
        // Three large objects need a 2×2 arrangement; every relation fits two large objects.
        let large = W.ObjectDescription(colour: .red, shape: .square, size: .large)
        let other = W.ObjectDescription(colour: .blue, shape: .circle, size: .large)
        var captions: [W.Caption] = [.counting(.three, large)]
        for r in W.Relation.allCases { captions.append(.relation(large, r, other)) }
        for caption in captions {
            for seed in 0..<200 as Range<UInt64> {
                XCTAssertTrue(try W.judge(W.render(caption: caption, seed: seed), caption: caption).passed, caption.text)
            }
        }
    }

    // MARK: - Training stream

    func testEveryTrainingImagePassesItsOwnCaption() throws {
        var stream = try W.TrainingStream(seed: 1)
        var templates = Set<W.Template>(), pairs = Set<W.ColourShape>()
        for _ in 0..<6000 {
            guard let sample = stream.next() else { return XCTFail("the stream ended") }
            let verdict = try W.judge(sample.image, caption: sample.caption)
            XCTAssertTrue(verdict.passed, "\(sample.caption): \(verdict.reason ?? "")")
            XCTAssertEqual(verdict.analysis.noisePixels, 0)
            templates.insert(sample.caption.template)
            for o in verdict.analysis.objects {
                pairs.insert(W.ColourShape(colour: o.colour, shape: o.shape ?? .square))
            }
        }
        XCTAssertEqual(templates.count, 3)
        XCTAssertEqual(pairs, Set(W.trainingPairs), "every training pair is drawn, never a held-out one")
    }

    func testTrainingCaptionsNeverHoldAHeldOutPair() throws {
        var counts: [W.Template: Int] = [:], sizes = Set<W.Size?>(), relations = Set<W.Relation>(), numbers = Set<W.Number>()
        for index in 0..<100_000 as Range<UInt64> {
            let caption = try W.trainingCaption(seed: 2, index: index)
            XCTAssertFalse(caption.containsHeldOutPair, caption.text)
            counts[caption.template, default: 0] += 1
            for o in caption.objects { sizes.insert(o.size) }
            if case .relation(let a, let r, let b) = caption {
                relations.insert(r)
                XCTAssertNotEqual(a.colourShape, b.colourShape)
            }
            if case .counting(let n, _) = caption { numbers.insert(n) }
        }
        // The standard mix: 25 % one object, 25 % counting, 50 % relation.
        XCTAssertEqual(Double(counts[.single] ?? 0) / 100_000, 0.25, accuracy: 0.01)
        XCTAssertEqual(Double(counts[.counting] ?? 0) / 100_000, 0.25, accuracy: 0.01)
        XCTAssertEqual(Double(counts[.relation] ?? 0) / 100_000, 0.5, accuracy: 0.01)
        XCTAssertEqual(sizes.count, 3)
        XCTAssertEqual(relations.count, 4)
        XCTAssertEqual(numbers.count, 2)
        XCTAssertEqual(try W.trainingSample(seed: 2, index: 77).caption, try W.trainingCaption(seed: 2, index: 77))
    }

    func testStreamIsDeterministicAndIndependentOfThreads() throws {
        let first = Array(try W.TrainingStream(seed: 9).prefix(64))
        XCTAssertEqual(first, Array(try W.TrainingStream(seed: 9).prefix(64)))
        XCTAssertNotEqual(first.map(\.caption), Array(try W.TrainingStream(seed: 10).prefix(64)).map(\.caption))
        XCTAssertEqual(Array(try W.TrainingStream(seed: 9, startIndex: 40).prefix(24)), Array(first[40...]))
        // Samples made on several threads, in any order, are the stream's.
        let pool = ThreadPool(threads: 4)
        let lock = Lock()
        var parallel = [W.Sample?](repeating: nil, count: 64)
        pool.parallelForEach(64) { i in
            let sample = try? W.trainingSample(seed: 9, index: UInt64(63 - i))
            lock.withLock { parallel[63 - i] = sample }
        }
        XCTAssertEqual(parallel.compactMap { $0 }, first)
        let caption = try W.Caption.parse("a large orange circle above a small white square")
        XCTAssertEqual(try W.render(caption: caption, seed: 3), try W.render(caption: caption, seed: 3))
        XCTAssertNotEqual(try W.render(caption: caption, seed: 3), try W.render(caption: caption, seed: 4))
        // Golden: the stream's first captions for seed 0 (a change here changes every training run).
        XCTAssertEqual(try (0..<4 as Range<UInt64>).map { try W.trainingCaption(seed: 0, index: $0).text }, Self.goldenCaptions)
    }

    static let goldenCaptions = [
        "a large white triangle below a blue circle", "a small purple square below a white circle",
        "three black squares", "three small orange squares",
    ]

    func testBadTemplateMixIsRejected() {
        XCTAssertThrowsError(try W.TrainingStream(seed: 0, mix: W.TemplateMix(single: 0, counting: 0, relation: 0)))
        XCTAssertThrowsError(try W.trainingSample(seed: 0, index: 0, mix: W.TemplateMix(single: -1, counting: 1, relation: 1)))
        XCTAssertThrowsError(try W.render(caption: .relation(.init(colour: .red, shape: .circle), .above,
                                                               .init(colour: .red, shape: .circle, size: .small)), seed: 0))
    }

    // MARK: - Judge

    func testRenderedImagesFailWrongCaptions() throws {
        var checked = 0
        for sample in try W.TrainingStream(seed: 4).prefix(600) {
            let analysis = try W.analyse(sample.image)
            for wrong in Self.wrongCaptions(for: sample.caption, drawn: analysis.objects) {
                let verdict = try W.judge(sample.image, caption: wrong)
                XCTAssertFalse(verdict.passed, "\(sample.caption) judged against \(wrong)")
                XCTAssertNotNil(verdict.reason)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 3000)
    }

    /// Captions that differ from `caption` in one way the image must show: a colour, a shape,
    /// a size (the opposite of the drawn one), the count, or the relation's direction.
    static func wrongCaptions(for caption: W.Caption, drawn: [W.DetectedObject]) -> [W.Caption] {
        func variants(_ o: W.ObjectDescription, drawnSize: W.Size) -> [W.ObjectDescription] {
            var result: [W.ObjectDescription] = []
            if let colour = W.Colour.allCases.first(where: { $0 != o.colour }) { result.append(.init(colour: colour, shape: o.shape, size: o.size)) }
            if let shape = W.Shape.allCases.first(where: { $0 != o.shape }) { result.append(.init(colour: o.colour, shape: shape, size: o.size)) }
            result.append(.init(colour: o.colour, shape: o.shape, size: drawnSize == .small ? .large : .small))
            return result
        }
        func size(of o: W.ObjectDescription) -> W.Size {
            drawn.first { $0.colour == o.colour && $0.shape == o.shape }?.size ?? .small
        }
        switch caption {
        case .single(let o):
            return variants(o, drawnSize: size(of: o)).map { .single($0) } + [.counting(.two, o)]
        case .counting(let n, let o):
            var result = [W.Caption.counting(n == .two ? .three : .two, o), .single(o)]
            // A stated size wrong for the first object fails however the others were drawn.
            result += variants(o, drawnSize: size(of: o)).map { .counting(n, $0) }
            return result
        case .relation(let a, let r, let b):
            let flipped: [W.Relation: W.Relation] = [.leftOf: .rightOf, .rightOf: .leftOf, .above: .below, .below: .above]
            var result: [W.Caption] = [.relation(a, flipped[r] ?? r, b), .relation(b, r, a), .single(a)]
            result += variants(a, drawnSize: size(of: a)).filter { $0.colourShape != b.colourShape }.map { .relation($0, r, b) }
            result += variants(b, drawnSize: size(of: b)).filter { $0.colourShape != a.colourShape }.map { .relation(a, r, $0) }
            return result
        }
    }

    func testJudgeReasons() throws {
        let red = W.PlacedObject(colour: .red, shape: .circle, size: .small, x: 5, y: 5)
        let blue = W.PlacedObject(colour: .blue, shape: .square, size: .large, x: 30, y: 30)
        let image = W.draw([red, blue])
        func reason(_ caption: String) throws -> String? { try W.judge(image, caption: W.Caption.parse(caption)).reason }
        XCTAssertNil(try reason("a red circle above a blue square"))
        XCTAssertNil(try reason("a small red circle to the left of a large blue square"))
        XCTAssertNil(try reason("a large blue square to the right of a red circle"))
        XCTAssertEqual(try reason("two red circles"), "expected two red circles, found a small red circle and a large blue square")
        XCTAssertEqual(try reason("three red circles"), "expected 3 objects, found 2: a small red circle and a large blue square")
        XCTAssertEqual(try reason("a red circle"), "expected 1 object, found 2: a small red circle and a large blue square")
        XCTAssertEqual(try reason("a red circle below a blue square"),
                       "the red circle is not below the blue square: centroid y 10.5 vs 41.5 (needs 4 px or more)")
        XCTAssertEqual(try reason("a large red circle above a blue square"),
                       "expected a large red circle and a blue square, found a small red circle and a large blue square")
        XCTAssertEqual(try reason("a red triangle above a blue square"),
                       "expected a red triangle and a blue square, found a small red circle and a large blue square")
        XCTAssertEqual(try W.judge(W.draw([]), caption: W.Caption.parse("a red circle")).reason, "expected 1 object, found 0")
        // Centroids closer than 4 px along the axis fail even with the boxes apart on the other axis.
        let side = W.draw([W.PlacedObject(colour: .red, shape: .circle, size: .small, x: 10, y: 5),
                           W.PlacedObject(colour: .blue, shape: .circle, size: .small, x: 12, y: 30)])
        let leftOf = try W.judge(side, caption: W.Caption.parse("a red circle to the left of a blue circle"))
        XCTAssertEqual(leftOf.reason, "the red circle is not to the left of the blue circle: centroid x 15.5 vs 17.5 (needs 4 px or more)")
        XCTAssertThrowsError(try W.judge(try RGBImage(width: 32, height: 32, pixels: [UInt8](repeating: 0, count: 32 * 32 * 3)),
                                         caption: W.Caption.parse("a red circle")))
    }

    func testUnrecognisedShapesFail() throws {
        // A 10×20 red bar: aspect 0.5.
        var image = W.draw([])
        paint(&image, x: 20, y: 20, width: 10, height: 20, rgb: (220, 40, 40))
        let verdict = try W.judge(image, caption: W.Caption.parse("a red square"))
        XCTAssertEqual(verdict.reason, "unrecognised shape: the red object at (20, 20), 10x20, has fill ratio 1.0 and aspect 0.5")
        // A hollow square outline: fill below 0.35.
        var outline = W.draw([W.PlacedObject(colour: .black, shape: .square, size: .large, x: 10, y: 10)])
        paint(&outline, x: 12, y: 12, width: 20, height: 20, rgb: (128, 128, 128))
        XCTAssertTrue(try W.judge(outline, caption: W.Caption.parse("a black square")).reason?.hasPrefix("unrecognised shape") ?? false)
    }

    func testNoiseHandling() throws {
        let caption = try W.Caption.parse("a yellow triangle to the right of a green circle")
        let clean = try W.render(caption: caption, seed: 1)
        XCTAssertTrue(try W.judge(clean, caption: caption).passed)
        // Colours within a few levels of the palette still map to it.
        var jittered = clean
        var rng = ShapesRandom(seed: 1, stream: .render, index: 1)
        for i in jittered.pixels.indices { jittered.pixels[i] = UInt8(Int(jittered.pixels[i]) + rng.below(21) - 10) }
        XCTAssertTrue(try W.judge(jittered, caption: caption).passed)
        // Off-palette pixels (magenta is > 60 from every palette colour) are noise: 122 pass, 123 (> 3 %) fail.
        let background = (0..<4096).filter { p in clean.pixels[3 * p] == 128 && clean.pixels[3 * p + 1] == 128 }
        var noisy = clean
        for p in background.prefix(122) { (noisy.pixels[3 * p], noisy.pixels[3 * p + 1], noisy.pixels[3 * p + 2]) = (255, 0, 255) }
        let pass = try W.judge(noisy, caption: caption)
        XCTAssertTrue(pass.passed, pass.reason ?? "")
        XCTAssertEqual(pass.analysis.noisePixels, 122)
        if let p = background.dropFirst(122).first { (noisy.pixels[3 * p], noisy.pixels[3 * p + 1], noisy.pixels[3 * p + 2]) = (255, 0, 255) }
        XCTAssertEqual(try W.judge(noisy, caption: caption).reason, "noise covers 123 pixels (3.0 % of the image; at most 3 % allowed)")
        // A 23-pixel blob of a palette colour is noise, not an object; a 5×5 one (25 pixels) is a small square.
        let image = W.draw([W.PlacedObject(colour: .red, shape: .circle, size: .large, x: 4, y: 4)])
        var blob = image
        paint(&blob, x: 40, y: 40, width: 5, height: 4, rgb: (40, 80, 220))
        paint(&blob, x: 40, y: 44, width: 3, height: 1, rgb: (40, 80, 220))
        let withBlob = try W.judge(blob, caption: W.Caption.parse("a large red circle"))
        XCTAssertTrue(withBlob.passed, withBlob.reason ?? "")
        XCTAssertEqual(withBlob.analysis.noisePixels, 23)
        var square = image
        paint(&square, x: 40, y: 40, width: 5, height: 5, rgb: (40, 80, 220))
        XCTAssertEqual(try W.judge(square, caption: W.Caption.parse("a large red circle")).reason,
                       "expected 1 object, found 2: a large red circle and a small blue square")
    }

    // MARK: - Evaluation set

    func testEvaluationCaptions() throws {
        let set = W.evaluationCaptions(seed: 0)
        XCTAssertEqual(set, W.evaluationCaptions(seed: 0))
        XCTAssertNotEqual(set, W.evaluationCaptions(seed: 1))
        XCTAssertEqual(set.count, 180)
        let groups = Dictionary(grouping: set, by: \.group)
        XCTAssertEqual(groups[.single]?.count, 50)
        XCTAssertEqual(groups[.counting]?.count, 50)
        XCTAssertEqual(groups[.relation]?.count, 50)
        XCTAssertEqual(groups[.heldOut]?.count, 30)
        for entry in set {
            XCTAssertEqual(entry.caption.containsHeldOutPair, entry.group == .heldOut, entry.caption.text)
            XCTAssertEqual(try W.Caption.parse(entry.caption.text), entry.caption)
            if entry.group != .heldOut { XCTAssertEqual(entry.caption.template.rawValue, entry.group.rawValue) }
            // Evaluation mode renders every caption, held-out pairs included, and the render passes.
            for seed in 0..<3 as Range<UInt64> {
                let verdict = try W.judge(W.render(caption: entry.caption, seed: seed), caption: entry.caption)
                XCTAssertTrue(verdict.passed, "\(entry.caption): \(verdict.reason ?? "")")
            }
        }
        for pair in W.heldOutPairs {
            let held = set.filter { $0.caption.objects.contains { $0.colourShape == pair } }
            XCTAssertEqual(Set(held.map(\.caption.template)).count, 3, "\(pair)")
        }
    }

    private func paint(_ image: inout RGBImage, x: Int, y: Int, width: Int, height: Int, rgb: (UInt8, UInt8, UInt8)) {
        for j in y..<y + height {
            for i in x..<x + width {
                let p = j * image.width + i
                (image.pixels[3 * p], image.pixels[3 * p + 1], image.pixels[3 * p + 2]) = rgb
            }
        }
    }
}
