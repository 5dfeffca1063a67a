import XCTest
@testable import DalleCore

/// Caller-given unCLIP noise, with the chain fixture's recorded noise (Golden/unclip/chain).
final class UnCLIPNoiseTests: XCTestCase {
    static let layout = UnCLIPNoise.Layout(images: 2, embeddingWidth: 32, decoderSize: (8, 8), superResolutionSize: (32, 32),
                                           priorSteps: 25, decoderSteps: 25, superResolutionSteps: 7)
    static let names = ["prior_latents", "prior_step_noise", "decoder_latents", "decoder_step_noise",
                        "super_res_latents", "super_res_step_noise"]

    /// The chain fixture's six noise tensors.
    static func recorded() throws -> [String: Tensor] {
        let chain = try UnCLIPGolden.file("chain")
        return try Dictionary(uniqueKeysWithValues: names.map { ($0, try chain.tensor($0)) })
    }

    func assertInvalid<T>(_ body: @autoclosure () throws -> T, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case .invalidArgument(let m)? = error as? DalleError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(m.contains(fragment), "'\(m)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testRecordedNoiseFitsItsLayout() throws {
        let tensors = try Self.recorded()
        let noise = try UnCLIPNoise(layout: Self.layout, tensors: tensors)
        XCTAssertEqual(noise.latents(.prior), tensors["prior_latents"])
        XCTAssertEqual(noise.stepNoise(.decoder, step: 0)?.shape, [2, 3, 8, 8])
        XCTAssertEqual(noise.stepNoise(.superResolution, step: 5)?.scalars,
                       Array(tensors["super_res_step_noise"]!.scalars.suffix(2 * 3 * 32 * 32)))
        XCTAssertNil(noise.stepNoise(.superResolution, step: 6))  // the last step draws none
        XCTAssertNil(noise.stepNoise(.prior, step: -1))
        // Any subset.
        let some = try UnCLIPNoise(layout: Self.layout, tensors: ["decoder_latents": tensors["decoder_latents"]!])
        XCTAssertNil(some.latents(.prior))
        XCTAssertNil(some.stepNoise(.decoder, step: 0))
    }

    func testNoiseFileRoundTrip() throws {
        var writer = SafetensorsWriter()
        let tensors = try Self.recorded()
        for name in Self.names { try writer.add(name, tensors[name]!) }
        let bytes = writer.serialized()
        let file = try bytes.withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        XCTAssertEqual(try UnCLIPNoise(file: file, layout: Self.layout).tensors, tensors)

        var f16 = SafetensorsWriter()
        try f16.add("prior_latents", tensors["prior_latents"]!, as: .f16)
        let f16File = try f16.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        assertInvalid(try UnCLIPNoise(file: f16File, layout: Self.layout), "is F16, expected F32")

        var other = SafetensorsWriter()
        try other.add("image", Tensor(zeros: [1]))
        let otherFile = try other.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        assertInvalid(try UnCLIPNoise(file: otherFile, layout: Self.layout), "unexpected noise tensor 'image'")
    }

    func testBadNoiseIsAnError() throws {
        let tensors = try Self.recorded()
        func with(_ name: String, _ t: Tensor) -> [String: Tensor] { var d = tensors; d[name] = t; return d }
        assertInvalid(try UnCLIPNoise(layout: Self.layout, tensors: with("decoder_latents", Tensor(zeros: [2, 3, 16, 16]))),
                      "'decoder_latents' has shape [2, 3, 16, 16], expected [2, 3, 8, 8]")
        assertInvalid(try UnCLIPNoise(layout: Self.layout, tensors: with("prior_step_noise", Tensor(zeros: [25, 2, 32]))),
                      "expected [24, 2, 32] [prior steps - 1")
        assertInvalid(try UnCLIPNoise(layout: Self.layout, tensors: with("latents", Tensor(zeros: [1]))), "unexpected noise tensor 'latents'")
        var nan = tensors["super_res_latents"]!
        nan.scalars[77] = .nan
        assertInvalid(try UnCLIPNoise(layout: Self.layout, tensors: with("super_res_latents", nan)),
                      "'super_res_latents' holds nan at index 77")
        var layout = Self.layout
        layout.decoderSteps = 0
        assertInvalid(try UnCLIPNoise(layout: layout, tensors: [:]), "below 1")
        layout = Self.layout
        layout.superResolutionSize = (1 << 20, 1 << 20)
        assertInvalid(try UnCLIPNoise(layout: layout, tensors: [:]), "too large")
        layout.superResolutionSize = (Int.max, 2)
        assertInvalid(try UnCLIPNoise(layout: layout, tensors: [:]), "too large")
        // One step: no step noise, an empty tensor is the only shape that fits.
        layout = Self.layout
        layout.priorSteps = 1
        XCTAssertNoThrow(try UnCLIPNoise(layout: layout, tensors: ["prior_step_noise": Tensor(zeros: [0, 2, 32])]))
    }
}
