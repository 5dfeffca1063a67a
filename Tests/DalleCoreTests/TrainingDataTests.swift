import XCTest
@testable import DalleCore
@testable import DalleImageIO

/// Training data sources: the resampler, the Shapes World source, a user's folder (with every
/// kind of bad input) and the training/validation split.
final class TrainingDataTests: XCTestCase {
    // MARK: - Resizing

    func testAreaAverageTwoByTwoToOne() throws {
        let image = try RGBImage(width: 2, height: 2, pixels: [10, 20, 30, 40, 50, 60, 70, 80, 91, 100, 110, 120])
        // Means: 220/4 = 55, 260/4 = 65, 301/4 = 75.25.
        XCTAssertEqual(try image.resized(width: 1, height: 1).pixels, [55, 65, 75])
        let tie = try RGBImage(width: 2, height: 2, pixels: [0, 0, 0, 0, 0, 0, 255, 1, 3, 255, 2, 2])
        XCTAssertEqual(try tie.resized(width: 1, height: 1).pixels, [128, 1, 1])  // 127.5 rounds up, 0.75, 1.25
    }

    func testAreaAverageOverFractionalCover() throws {
        // 3 → 2: output 0 = (2·x0 + x1) / 3, output 1 = (x1 + 2·x2) / 3.
        let image = try RGBImage(width: 3, height: 1, pixels: [0, 3, 90, 30, 6, 90, 60, 9, 0])
        XCTAssertEqual(try image.resized(width: 2, height: 1).pixels, [10, 4, 90, 50, 8, 30])
        XCTAssertEqual(Resampling.taps(from: 3, to: 2),
                       [Resampling.Tap(start: 0, weights: [2 / 3, 1 / 3]), Resampling.Tap(start: 1, weights: [1 / 3, 2 / 3])])
    }

    func testHalvingAveragesEachBlock() throws {
        var rng = SplitMix64(seed: 5)
        let image = try RGBImage(width: 8, height: 6, pixels: (0..<(8 * 6 * 3)).map { _ in rng.byte() })
        let half = try image.resized(width: 4, height: 3)
        for y in 0..<3 {
            for x in 0..<4 {
                for c in 0..<3 {
                    let block = [(0, 0), (1, 0), (0, 1), (1, 1)].map { d in
                        Int(image.pixels[((2 * y + d.1) * 8 + 2 * x + d.0) * 3 + c])
                    }
                    let mean = Double(block.reduce(0, +)) / 4
                    XCTAssertEqual(Int(half.pixels[(y * 4 + x) * 3 + c]), Int(mean.rounded()), "(\(x), \(y)) channel \(c)")
                }
            }
        }
    }

    func testBilinearUpscaleBetweenPixelCentres() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [0, 200, 10, 100, 0, 10])
        // Outputs sit at input x = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        XCTAssertEqual(try image.resized(width: 4, height: 1).pixels, [0, 200, 10, 25, 150, 10, 75, 50, 10, 100, 0, 10])
        let one = try RGBImage(width: 1, height: 1, pixels: [7, 8, 9])
        XCTAssertEqual(try one.resized(width: 3, height: 2).pixels, (0..<18).map { [7, 8, 9][$0 % 3] as UInt8 })
    }

    func testFlatImageStaysFlatAtAnyScale() throws {
        let colour: [UInt8] = [17, 200, 255]
        for (w, h) in [(128, 128), (100, 100), (64, 64), (37, 90)] {
            let flat = try RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { colour[$0 % 3] })
            for side in [64, 1, 100] {
                let out = try flat.resized(width: side, height: side)
                XCTAssertEqual(out.width, side)
                XCTAssertEqual(out.pixels, (0..<(side * side * 3)).map { colour[$0 % 3] }, "\(w)x\(h) → \(side)")
            }
        }
    }

    func testResizeToSameSizeIsIdentityAndBadSizesThrow() throws {
        var rng = SplitMix64(seed: 9)
        let image = try RGBImage(width: 5, height: 4, pixels: (0..<60).map { _ in rng.byte() })
        XCTAssertEqual(try image.resized(width: 5, height: 4), image)
        for (w, h) in [(0, 4), (4, -1), (1 << 14, 1 << 14)] {
            XCTAssertThrowsError(try image.resized(width: w, height: h)) { error in
                guard case DalleError.invalidArgument = error else { return XCTFail("\(error)") }
            }
        }
    }

    func testCentreCropKeepsTheMiddle() throws {
        // 5×3: columns 1...3 kept; 3×6: rows 1...3 kept.
        let wide = try RGBImage(width: 5, height: 3, pixels: (0..<45).map { UInt8($0) })
        let square = wide.centreCropped()
        XCTAssertEqual(square.width, 3)
        XCTAssertEqual(square.height, 3)
        XCTAssertEqual(square.pixels, [0, 1, 2].flatMap { y in (0..<9).map { UInt8(y * 15 + 3 + $0) } })
        let tall = try RGBImage(width: 3, height: 6, pixels: (0..<54).map { UInt8($0) })
        XCTAssertEqual(tall.centreCropped().pixels, (9..<36).map { UInt8($0) })
        XCTAssertEqual(square.centreCropped(), square)
    }

    // MARK: - The Shapes World

    func testShapesWorldSourceIsTheTrainingStream() throws {
        let source = try ShapesWorldSource(seed: 42)
        XCTAssertEqual(source.count, Int.max)
        XCTAssertEqual(source.imageSize, 64)
        for i in [0, 1, 17, 1000] {
            let example = try source.example(at: i)
            let sample = try ShapesWorld.trainingSample(seed: 42, index: UInt64(i))
            XCTAssertEqual(example.caption, sample.caption.text)
            XCTAssertEqual(example.image, sample.image)
            XCTAssertEqual(try source.example(at: i), example, "same index, same example")
        }
        XCTAssertNotEqual(try source.example(at: 0), try ShapesWorldSource(seed: 43).example(at: 0))
        XCTAssertThrowsError(try source.example(at: -1))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, count: 3).example(at: 3))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, mix: .init(single: 0, counting: 0, relation: 0)))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, imageSize: 0))
    }

    func testShapesDataTakesTemplateWeights() throws {
        XCTAssertNil(try TrainingJob.shapesData("folder/shapes"))
        XCTAssertNil(try TrainingJob.shapesData("shapes2:1,1,1"))
        XCTAssertEqual(try TrainingJob.shapesData("shapes")?.1, .standard)
        let (name, mix) = try XCTUnwrap(try TrainingJob.shapesData("shapes-defects:0,3,1"))
        XCTAssertEqual(name, "shapes-defects")
        XCTAssertEqual(mix, ShapesWorld.TemplateMix(single: 0, counting: 3, relation: 1))
        for bad in ["shapes:", "shapes:1,2", "shapes:1,2,x", "shapes:1,2,3,4", "shapes:1,,2"] {
            XCTAssertThrowsError(try TrainingJob.shapesData(bad), bad) { error in
                XCTAssertTrue("\(error)".contains("':SINGLE,COUNTING,RELATION'"), "\(error)")
            }
        }
        // The weights reach the training and validation streams: counting alone gives only counting captions.
        let split = try TrainingJob(stage: "dvae", data: "shapes:0,1,0", outputPath: "unused").dataSplit(imageSize: 64) { _ in }
        for source in [split.training, split.validation] {
            for i in 0..<40 {
                let caption = try source.example(at: i).caption
                XCTAssertTrue(caption.hasPrefix("two ") || caption.hasPrefix("three "), caption)
            }
        }
        XCTAssertThrowsError(try TrainingJob(stage: "dvae", data: "shapes:0,0,0", outputPath: "unused").dataSplit(imageSize: 64) { _ in })
    }

    func testShapesWorldSourceAtAnotherImageSize() throws {
        let small = try ShapesWorldSource(seed: 7, imageSize: 32).example(at: 3)
        let full = try ShapesWorldSource(seed: 7).example(at: 3)
        XCTAssertEqual(small.caption, full.caption)
        XCTAssertEqual(small.image, try full.image.resized(width: 32, height: 32))
    }

    func testShapesWorldNearMissesArePairsTheJudgeTellsApart() throws {
        let source = try ShapesWorldSource(seed: 42, nearMisses: true)
        var changed: [ShapesWorld.Template: Int] = [:], kinds: Set<String> = []
        for k in 0..<80 {
            let original = try source.example(at: 2 * k), miss = try source.example(at: 2 * k + 1)
            XCTAssertEqual(original, try ShapesWorldSource(seed: 42).example(at: k), "even examples are the training stream")
            XCTAssertEqual(try source.example(at: 2 * k + 1), miss, "same index, same example")
            let a = try ShapesWorld.Caption.parse(original.caption), b = try ShapesWorld.Caption.parse(miss.caption)
            XCTAssertEqual(a.template, b.template)
            XCTAssertNotEqual(a, b)
            XCTAssertFalse(b.objects.contains { $0.colourShape.isHeldOut })
            func oneChange(_ x: ShapesWorld.ObjectDescription, _ y: ShapesWorld.ObjectDescription) -> Bool {
                x.colourShape == y.colourShape ? x.size != nil && y.size != nil && x.size != y.size
                    : x.size == y.size && (x.colour == y.colour) != (x.shape == y.shape)
            }
            switch (a, b) {
            case (.single(let x), .single(let y)):
                XCTAssertTrue(oneChange(x, y), "one of colour, shape and stated size changed: \(a) / \(b)")
            case (.counting(_, let x), .counting(_, let y)): XCTAssertEqual(x, y)
            case (.relation(let x, let r, let y), .relation(let x2, let r2, let y2)):
                if r2 == r {
                    XCTAssertTrue(x == x2 ? oneChange(y, y2) : y == y2 && oneChange(x, x2), "one object changed: \(a) / \(b)")
                    XCTAssertNotEqual(x2.colourShape, y2.colourShape)
                    kinds.insert("relation object")
                } else {
                    XCTAssertEqual([x, y], [x2, y2])
                    XCTAssertEqual(r2, r.opposite)
                    kinds.insert("opposite relation")
                }
            default: XCTFail("\(a) / \(b)")
            }
            assertMinimalPair(original.image, miss.image, a, b)
            XCTAssertTrue(try ShapesWorld.judge(miss.image, caption: b).passed, "\(b)")
            XCTAssertFalse(try ShapesWorld.judge(miss.image, caption: a).passed, "the near miss's image fails \(a)")
            changed[a.template, default: 0] += 1
        }
        XCTAssertEqual(Set(changed.keys), Set(ShapesWorld.Template.allCases))
        XCTAssertEqual(kinds, ["relation object", "opposite relation"])
        XCTAssertEqual(try source.trainingAndValidation(validationCount: 4).validation.example(at: 0),
                       try ShapesWorldSource(seed: ShapesWorldSource.validationSeed(for: 42)).example(at: 0))
    }

    /// Near-miss captions: distinct, in the grammar, never a held-out pair, and each one a
    /// caption that the original's picture fails; none for text outside the grammar.
    func testNearMissCaptionsAreCaptionsThePictureFails() throws {
        var counts: [ShapesWorld.Template: Set<Int>] = [:]
        for (k, sample) in (try ShapesWorld.TrainingStream(seed: 5)).prefix(60).enumerated() {
            let misses = ShapesWorld.nearMissCaptions(of: sample.caption.text, count: 3, seed: 9, index: UInt64(k))
            XCTAssertEqual(misses, ShapesWorld.nearMissCaptions(of: sample.caption.text, count: 3, seed: 9, index: UInt64(k)))
            XCTAssertEqual(Set(misses).count, misses.count, "distinct: \(misses)")
            XCTAssertFalse(misses.contains(sample.caption.text))
            counts[sample.caption.template, default: []].insert(misses.count)
            for miss in misses {
                let caption = try ShapesWorld.Caption.parse(miss)
                XCTAssertEqual(caption.template, sample.caption.template)
                XCTAssertFalse(caption.containsHeldOutPair, miss)
                XCTAssertFalse(try ShapesWorld.judge(sample.image, caption: caption).passed, "the picture of '\(sample.caption)' passes '\(miss)'")
            }
        }
        XCTAssertEqual(counts[.counting], [1], "a counting caption has one near miss, the other number")
        XCTAssertEqual(counts[.single]?.max(), 3)
        XCTAssertEqual(counts[.relation]?.max(), 3)
        let seeds = Set((0..<8).map { ShapesWorld.nearMissCaptions(of: "a red circle above a blue square", count: 1, seed: $0, index: 0) })
        XCTAssertGreaterThan(seeds.count, 1, "the seed draws which")
        XCTAssertEqual(ShapesWorld.nearMissCaptions(of: "a red circle", count: 0, seed: 1, index: 0), [])
        XCTAssertEqual(ShapesWorld.nearMissCaptions(of: "a cat on a mat", count: 2, seed: 1, index: 0), [])
    }

    func testShapesWorldDefectsAreHardNegativesTheJudgeFails() throws {
        let source = try ShapesWorldSource(seed: 42, defects: 2), plain = try ShapesWorldSource(seed: 42)
        var negatives = 0, reasons: [String: Int] = [:]
        for k in 0..<150 {
            let example = try source.example(at: k), caption = try ShapesWorld.Caption.parse(example.caption)
            XCTAssertEqual(TrainingExample(caption: example.caption, image: example.image), try plain.example(at: k),
                           "the positive is the training stream's sample")
            XCTAssertEqual(try source.example(at: k), example, "same index, same example")
            XCTAssertLessThanOrEqual(example.negatives.count, 2)
            negatives += example.negatives.count
            for negative in example.negatives {
                XCTAssertNotEqual(negative, example.image)
                let verdict = try ShapesWorld.judge(negative, caption: caption)
                XCTAssertFalse(verdict.passed, "a defect image passes \(caption)")
                XCTAssertEqual(ShapesWorld.matchingOrders(verdict.analysis.objects, caption.objects), [], "its objects are wrong")
                let reason = verdict.reason ?? ""
                let kind = reason.hasPrefix("unrecognised") ? "unrecognised" : reason.hasPrefix("expected \(caption.objects.count) object")
                    ? "object count" : reason.hasPrefix("expected") ? "wrong object" : reason
                reasons[kind, default: 0] += 1
            }
        }
        XCTAssertGreaterThanOrEqual(negatives, 295, "nearly every example gets both its defects")
        XCTAssertEqual(Set(reasons.keys), ["unrecognised", "object count", "wrong object"], "\(reasons)")
        XCTAssertTrue(reasons.values.allSatisfy { $0 >= 20 }, "every failure kind is common: \(reasons)")
        let validation = try source.trainingAndValidation(validationCount: 4).validation.example(at: 0)
        XCTAssertEqual(validation.negatives.count, 2)
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, defects: 9))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, defects: -1))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 1, nearMisses: true, defects: 2))
    }

    func testShapesWorldValidationIsAnotherSeed() throws {
        let split = try ShapesWorldSource(seed: 42).trainingAndValidation(validationCount: 16)
        XCTAssertEqual(split.training.count, Int.max)
        XCTAssertEqual(split.validation.count, 16)
        let validationSeed = ShapesWorldSource.validationSeed(for: 42)
        XCTAssertNotEqual(validationSeed, 42)
        var differing = 0
        for i in 0..<16 {
            let training = try split.training.example(at: i), validation = try split.validation.example(at: i)
            XCTAssertEqual(training, try ShapesWorldSource(seed: 42).example(at: i))
            XCTAssertEqual(validation, try ShapesWorldSource(seed: validationSeed).example(at: i))
            if training.image != validation.image { differing += 1 }
        }
        XCTAssertEqual(differing, 16)
        XCTAssertThrowsError(try split.validation.example(at: 16))
        XCTAssertThrowsError(try ShapesWorldSource(seed: 42).trainingAndValidation(validationFraction: 0.1))
    }

    // MARK: - A folder of captioned images

    func testFolderPairsImagesWithCaptionsAndReportsEverythingElse() throws {
        let dir = try TemporaryFolder()
        let red = try solid(64, 64, [200, 0, 0]), blue = try solid(64, 64, [0, 0, 200])
        try dir.png("b.png", red)
        try dir.text("b.txt", "a red square")
        try dir.png("a.png", blue)
        try dir.text("a.txt", "\u{FEFF}  a blue\n\tsquare \r\n\n")
        try dir.png("c.png", try solid(128, 128, [10, 20, 30]))             // downscaled
        try dir.text("c.txt", "big")
        let wide = try RGBImage(width: 100, height: 60, pixels: (0..<6000).flatMap { p -> [UInt8] in
            let x = p % 100
            return x < 20 ? [255, 0, 0] : x < 80 ? [0, 0, 255] : [0, 255, 0]
        })
        try dir.png("d.png", wide)                                           // cropped to the blue middle
        try dir.text("d.txt", "wide")
        try dir.bytes("e.jpg", [0xFF, 0xD8, 0xFF, 0xE0])
        try dir.text("e.txt", "a photo")
        try dir.png("f.png", red)                                            // no caption
        try dir.bytes("g.png", Array("not a png at all".utf8))               // corrupt
        try dir.text("g.txt", "corrupt")
        try dir.png("h.png", red)
        try dir.text("h.txt", " \n\t ")                                      // empty caption
        try dir.text("orphan.txt", "no image")
        try dir.text("notes.md", "# notes")
        try dir.png(".hidden.png", red)
        try dir.folder("sub")
        try dir.png("sub/i.png", red)
        try dir.text("sub/i.txt", "in a subfolder")

        let source = try FolderSource(directory: dir.path, imageSize: 64)
        XCTAssertEqual(source.imagePaths, ["a.png", "b.png", "c.png", "d.png", "sub/i.png"])
        XCTAssertEqual(source.count, 5)
        XCTAssertEqual(source.imageSize, 64)
        XCTAssertEqual(try (0..<5).map { try source.example(at: $0).caption },
                       ["a blue square", "a red square", "big", "wide", "in a subfolder"])
        XCTAssertEqual(try source.example(at: 0).image, blue)
        XCTAssertEqual(try source.example(at: 1).image, red)
        XCTAssertEqual(try source.example(at: 2).image, try solid(64, 64, [10, 20, 30]))
        XCTAssertEqual(try source.example(at: 3).image, try solid(64, 64, [0, 0, 255]))
        XCTAssertThrowsError(try source.example(at: 5))

        var expected = FolderSource.Summary()
        expected.used = 5
        expected.resized = 2
        expected.cropped = 1
        expected.unsupportedFormat = 1
        expected.missingCaption = 1
        expected.emptyCaption = 1
        expected.unreadable = 1
        expected.captionsWithoutImage = 1
        expected.otherFiles = 1
        XCTAssertEqual(source.summary, expected)
        XCTAssertEqual(source.summary.skipped, 4)
        XCTAssertEqual(source.warnings.count, 7, "\(source.warnings)")
        for (fragment, file) in [("convert to PNG", "e.jpg"), ("without a caption", "f.png"), ("unreadable image: g.png", "PNG: not a PNG file"),
                                 ("empty caption", "h.txt"), ("without an image", "orphan.txt"), ("other file", "notes.md"),
                                 ("resized 2 images to 64x64", "(1 non-square")] {
            XCTAssertTrue(source.warnings.contains { $0.contains(fragment) && $0.contains(file) },
                          "no warning with '\(fragment)' and '\(file)' in \(source.warnings)")
        }

        // The same examples with any number of threads.
        let single = try FolderSource(directory: dir.path + "/", imageSize: 64, threads: 1)
        XCTAssertEqual(try (0..<5).map { try single.example(at: $0) }, try (0..<5).map { try source.example(at: $0) })
        XCTAssertEqual(single.warnings, source.warnings)
    }

    func testFolderConvertsGrayscalePaletteAndRGBAToRGB() throws {
        let dir = try TemporaryFolder()
        let fixtures = ["ct0_d8_plain_dyn", "pillow_p4", "pillow_rgba", "ct4_d16_plain_dyn"]
        for name in fixtures {
            try dir.bytes(name + ".png", try FileIO.read(path: "\(PNGTests.fixtureDirectory)/\(name).png"))
            try dir.text(name + ".txt", name)
        }
        let source = try FolderSource(directory: dir.path, imageSize: 8)
        XCTAssertEqual(source.count, 4)
        XCTAssertEqual(source.summary.cropped, 4)
        for (i, name) in fixtures.sorted().enumerated() {
            let decoded = try PNG.read(path: "\(PNGTests.fixtureDirectory)/\(name).png")
            let example = try source.example(at: i)
            XCTAssertEqual(example.caption, name)
            XCTAssertEqual(example.image, try decoded.centreCropped().resized(width: 8, height: 8), name)
        }
    }

    func testFolderErrorsSayWhatWasFound() throws {
        let dir = try TemporaryFolder()
        expectError(try FolderSource(directory: dir.path, imageSize: 64), .invalidArgument,
                    "no PNG images with captions in \(dir.path): the folder is empty")
        for name in ["x", "y", "z"] {
            try dir.bytes(name + ".jpg", [0xFF, 0xD8])
            try dir.text(name + ".txt", "a caption")
        }
        try dir.bytes("w.webp", [0x52, 0x49])
        try dir.png("v.png", try solid(4, 4, [1, 2, 3]))
        expectError(try FolderSource(directory: dir.path, imageSize: 64), .invalidArgument,
                    "found 3 .jpg files, 1 .webp file (unsupported format, convert to PNG), 1 PNG image without a .txt caption")
        expectError(try FolderSource(directory: dir.path + "/missing", imageSize: 64), .io,
                    "cannot open training folder \(dir.path)/missing: No such file or directory")
        expectError(try FolderSource(directory: dir.path + "/v.png", imageSize: 64), .invalidArgument, "v.png is not a folder")
        expectError(try FolderSource(directory: dir.path, imageSize: 0), .invalidArgument, "image size must be 1...4096")
    }

    func testCaptionText() {
        XCTAssertEqual(FolderSource.caption(fromFile: Array("\u{FEFF}a  red\r\ncircle\n".utf8)), "a red circle")
        XCTAssertEqual(FolderSource.caption(fromFile: Array(" \t\n".utf8)), "")
        XCTAssertEqual(FolderSource.caption(fromFile: [0x61, 0xFF, 0x62]), "a\u{FFFD}b")
    }

    // MARK: - Splitting

    func testFolderSplitHoldsOutEveryKthFile() throws {
        let dir = try TemporaryFolder()
        for i in 0..<10 {
            try dir.png("img\(i).png", try solid(2, 2, [UInt8(i), 0, 0]))
            try dir.text("img\(i).txt", "image \(i)")
        }
        let source = try FolderSource(directory: dir.path, imageSize: 2)
        let split = try source.trainingAndValidation(validationFraction: 0.2)
        let captions = { (s: any TrainingDataSource) in try (0..<s.count).map { try s.example(at: $0).caption } }
        XCTAssertEqual(try captions(split.validation), ["image 2", "image 7"])
        XCTAssertEqual(try captions(split.training), ["image 0", "image 1", "image 3", "image 4", "image 5", "image 6",
                                                     "image 8", "image 9"])
        XCTAssertEqual(split.training.imageSize, 2)
        XCTAssertEqual(try source.trainingAndValidation(validationFraction: 0.01).validation.count, 1)
        XCTAssertEqual(try source.trainingAndValidation(validationFraction: 0.99).training.count, 1)
        XCTAssertEqual(try source.trainingAndValidation(validationFraction: 0).validation.count, 0)
        XCTAssertEqual(try captions(try source.trainingAndValidation(validationCount: 3).validation),
                       ["image 1", "image 4", "image 7"])
        XCTAssertThrowsError(try source.trainingAndValidation(validationCount: 10))
        XCTAssertThrowsError(try source.trainingAndValidation(validationFraction: 1))
        XCTAssertThrowsError(try split.validation.example(at: 2))

        let one = try TemporaryFolder()
        try one.png("only.png", try solid(2, 2, [1, 1, 1]))
        try one.text("only.txt", "only")
        let lone = try FolderSource(directory: one.path, imageSize: 2).trainingAndValidation(validationFraction: 0.1)
        XCTAssertEqual(lone.training.count, 1)
        XCTAssertEqual(lone.validation.count, 0)
    }

    // MARK: - Helpers

    private func solid(_ width: Int, _ height: Int, _ rgb: [UInt8]) throws -> RGBImage {
        try RGBImage(width: width, height: height, pixels: (0..<(width * height * 3)).map { rgb[$0 % 3] })
    }

    private func expectError(_ body: @autoclosure () throws -> FolderSource, _ kind: ErrorKind, _ fragment: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message: String
            switch (kind, error as? DalleError) {
            case (.invalidArgument, .invalidArgument(let m)?), (.io, .io(let m)?): message = m
            default: return XCTFail("expected \(kind), got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    private enum ErrorKind { case invalidArgument, io }

    /// The near miss is drawn on the original's layout: one object recoloured or reshaped in the same
    /// box or given the other size, an object dropped and the others untouched, a turned
    /// left–right relation exactly mirrored.
    private func assertMinimalPair(_ original: RGBImage, _ miss: RGBImage, _ a: ShapesWorld.Caption, _ b: ShapesWorld.Caption,
                                   file: StaticString = #filePath, line: UInt = #line) {
        let gray = ShapesWorld.background, n = ShapesWorld.imageSize
        func drawn(_ image: RGBImage) -> [Bool] {
            (0..<n * n).map { p in (image.pixels[3 * p], image.pixels[3 * p + 1], image.pixels[3 * p + 2]) != gray }
        }
        func box(_ image: RGBImage) -> [Int] {
            let d = drawn(image), cells = (0..<n * n).filter { d[$0] }
            return [cells.map { $0 % n }.min()!, cells.map { $0 / n }.min()!, cells.map { $0 % n }.max()!, cells.map { $0 / n }.max()!]
        }
        switch (a, b) {
        case (.single(let x), .single(let y)):
            let (p, q) = (box(original), box(miss))
            if x.size == y.size {
                XCTAssertEqual(p, q, "same box", file: file, line: line)
            } else {
                XCTAssertEqual(q[2] - q[0] - (p[2] - p[0]), (y.size?.pixels ?? 0) - (x.size?.pixels ?? 0), "the other size",
                               file: file, line: line)
            }
        case (.counting(.three, _), .counting):  // (an object added may find no room: then a fresh layout)
            let kept = zip(drawn(miss), 0...).filter { $0.0 }.map { $0.1 }
            XCTAssertTrue(kept.allSatisfy { p in miss.pixels[3 * p..<3 * p + 3] == original.pixels[3 * p..<3 * p + 3] },
                          "the two objects left are two of the three", file: file, line: line)
        case (.relation(_, let r, _), .relation(_, let r2, _)) where r2 != r && (r == .leftOf || r == .rightOf):
            let mirrored = (0..<n * n).flatMap { (p: Int) -> ArraySlice<UInt8> in
                let source: Int = p - p % n + (n - 1 - p % n)
                return original.pixels[3 * source..<3 * source + 3]
            }
            XCTAssertEqual(miss.pixels, mirrored, "mirrored left to right", file: file, line: line)
        default:
            XCTAssertNotEqual(original, miss, file: file, line: line)
        }
    }
}

/// A folder under /tmp, removed with everything in it when the value goes away.
private final class TemporaryFolder {
    let path: String
    private var created: [String] = []

    init() throws {
        var template = Array("/tmp/dalle-data-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw DalleError.io("mkdtemp failed") }
        path = String(cString: made)
    }

    func bytes(_ name: String, _ data: [UInt8]) throws {
        try FileIO.write(data, path: path + "/" + name)
        created.append(name)
    }

    func text(_ name: String, _ text: String) throws { try bytes(name, Array(text.utf8)) }
    func png(_ name: String, _ image: RGBImage) throws { try bytes(name, try PNG.encode(image)) }

    func folder(_ name: String) throws {
        guard mkdir(path + "/" + name, 0o755) == 0 else { throw DalleError.io("mkdir \(name) failed") }
        created.append(name)
    }

    deinit {
        for name in created.reversed() { _ = remove(path + "/" + name) }
        _ = rmdir(path)
    }
}
