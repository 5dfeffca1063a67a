import XCTest
@testable import DalleCore

/// The timestep embedding and bicubic resizes against diffusers / PyTorch (Golden/unclip/ops).
final class UnCLIPBuildingBlockTests: XCTestCase {
    func testTimestepEmbeddingMatchesDiffusers() throws {
        let io = try UnCLIPGolden.file("ops")
        let t = try io.tensor("embedding.timesteps").scalars
        // Rows 0-2 (t = 0, 1, 37) at 1e-5. Rows 3-4 (t = 500.5, 999): the angle t·f is a float32 near
        // 999 rad, whose ulp is 6.1e-5, and PyTorch's exp (SLEEF) differs from libm's by one ulp in a
        // few frequencies (2 of 64 here), so sin/cos of those angles may differ by ~3e-5: atol 1e-4.
        for dim in [1, 2, 7, 32, 33, 128] {
            let actual = try timestepEmbedding(t, dim: dim), expected = try io.tensor("embedding.dim_\(dim)")
            func rows(_ x: Tensor, _ r: Range<Int>) -> Tensor {
                Tensor(uncheckedShape: [r.count, dim], scalars: Array(x.scalars[(r.lowerBound * dim)..<(r.upperBound * dim)]))
            }
            UnCLIPGolden.assertClose(rows(actual, 0..<3), rows(expected, 0..<3), atol: 1e-5, rtol: 1e-5,
                                     "timestep embedding dim \(dim), t <= 37")
            UnCLIPGolden.assertClose(rows(actual, 3..<5), rows(expected, 3..<5), atol: 1e-4, rtol: 1e-5,
                                     "timestep embedding dim \(dim), t = 500.5, 999")
        }
        UnCLIPGolden.assertClose(try timestepEmbedding(t, dim: 16, flipSinToCos: false, downscaleFreqShift: 1),
                                 try io.tensor("embedding.shift1.dim_16"), atol: 1e-5, rtol: 1e-5, "timestep embedding shift 1")
        let odd = try timestepEmbedding([3], dim: 5)
        XCTAssertEqual(odd.shape, [1, 5])
        XCTAssertEqual(odd.scalars[4], 0)
        XCTAssertEqual(odd.scalars[0], cosf(3))
    }

    func testTimestepEmbeddingBadInput() {
        XCTAssertThrowsError(try timestepEmbedding([1], dim: 0))
        XCTAssertThrowsError(try timestepEmbedding([1], dim: 2, downscaleFreqShift: 1))  // one frequency, shift 1: 0/0
        XCTAssertThrowsError(try timestepEmbedding([.nan], dim: 8))
        XCTAssertThrowsError(try timestepEmbedding([1], dim: 8, maxPeriod: 0))
        XCTAssertEqual(try timestepEmbedding([], dim: 8).shape, [0, 8])
    }

    func testBicubicResizeMatchesPyTorch() throws {
        let io = try UnCLIPGolden.file("ops")
        let cases: [(String, String, Int, Int)] = [
            ("8_to_32", "8", 32, 32), ("16_to_64", "16", 64, 64), ("16_to_5", "16", 5, 5),
            ("37x23_to_12x30", "37x23", 12, 30), ("8_to_8", "8", 8, 8),
        ]
        for (name, input, h, w) in cases {
            let x = try io.tensor("resize.input_\(input)")
            for (kind, antialias) in [("aa", true), ("plain", false)] {
                UnCLIPGolden.assertClose(try x.resizedBicubic(height: h, width: w, antialias: antialias),
                                         try io.tensor("resize.\(kind).\(name)"), atol: 1e-5, rtol: 1e-5, "resize \(kind) \(name)")
            }
        }
    }

    /// The pipeline's own upscaling of the decoder's image (Golden/unclip/chain), 8×8 → 32×32.
    func testPipelineUpscaleMatchesDiffusers() throws {
        let chain = try UnCLIPGolden.file("chain")
        let small = try chain.tensor("image_small"), upscaled = try chain.tensor("image_upscaled")
        UnCLIPGolden.assertClose(try small.resizedBicubic(height: upscaled.shape[2], width: upscaled.shape[3], antialias: true),
                                 upscaled, atol: 1e-5, rtol: 1e-5, "chain upscale")
    }

    func testSphericalInterpolationMatchesReference() throws {
        let io = try UnCLIPGolden.file("ops")
        let low = try io.tensor("slerp.low"), high = try io.tensor("slerp.high"), expected = try io.tensor("slerp.out")
        let fractions = try io.tensor("slerp.fractions").scalars
        var rows: [Float] = []
        for t in fractions {
            for r in 0..<low.shape[0] {
                let a = UnCLIPGolden.item(low, r).scalars, b = UnCLIPGolden.item(high, r).scalars
                rows += try sphericalInterpolation(from: a, to: b, fraction: t)
            }
        }
        UnCLIPGolden.assertClose(Tensor(uncheckedShape: expected.shape, scalars: rows), expected, atol: 1e-6, rtol: 1e-5, "slerp")
        // Ends exact to float rounding; parallel and opposite vectors blend straight.
        let a: [Float] = [1, 2, 3], b: [Float] = [-2, 0.5, 4]
        XCTAssertEqual(try sphericalInterpolation(from: a, to: b, fraction: 0), a)
        XCTAssertEqual(try sphericalInterpolation(from: a, to: a.map { $0 * 3 }, fraction: 0.5), a.map { $0 * 2 })
        XCTAssertEqual(try sphericalInterpolation(from: a, to: a.map { -$0 }, fraction: 0.5), [0, 0, 0])
        XCTAssertThrowsError(try sphericalInterpolation(from: a, to: [1, 2], fraction: 0.5))
        XCTAssertThrowsError(try sphericalInterpolation(from: [], to: [], fraction: 0.5))
        XCTAssertThrowsError(try sphericalInterpolation(from: a, to: [0, 0, 0], fraction: 0.5))
        XCTAssertThrowsError(try sphericalInterpolation(from: a, to: [1, .nan, 0], fraction: 0.5))
        XCTAssertThrowsError(try sphericalInterpolation(from: a, to: b, fraction: .infinity))
    }

    func testBicubicResizeEdgesAndBadInput() throws {
        // A constant image stays constant (weights sum to one), also from and to a single pixel.
        let constant = Tensor(uncheckedShape: [1, 1, 3, 1], scalars: [0.25, 0.25, 0.25])
        for antialias in [true, false] {
            for (h, w) in [(1, 1), (7, 5), (2, 9)] {
                let y = try constant.resizedBicubic(height: h, width: w, antialias: antialias)
                XCTAssertEqual(y.shape, [1, 1, h, w])
                for v in y.scalars { XCTAssertEqual(v, 0.25, accuracy: 1e-6) }
            }
        }
        XCTAssertThrowsError(try Tensor(zeros: [3, 8, 8]).resizedBicubic(height: 4, width: 4, antialias: true))
        XCTAssertThrowsError(try Tensor(zeros: [1, 0, 8, 8]).resizedBicubic(height: 4, width: 4, antialias: true))
        XCTAssertThrowsError(try Tensor(zeros: [1, 1, 8, 8]).resizedBicubic(height: 0, width: 4, antialias: true))
        XCTAssertThrowsError(try Tensor(zeros: [1, 1, 8, 8]).resizedBicubic(height: 1 << 20, width: 1 << 20, antialias: false))
        XCTAssertThrowsError(try Tensor(zeros: [1, 1, 8, 8]).resizedBicubic(height: Int.max, width: 2, antialias: false))
    }
}
