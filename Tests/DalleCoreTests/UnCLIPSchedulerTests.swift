import XCTest
@testable import DalleCore

/// The unCLIP fixtures (tools/make_golden_unclip.py, from diffusers 0.42.1).
enum UnCLIPGolden {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/unclip").path

    static func file(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: directory + "/\(name).safetensors")
    }

    /// Asserts |actual − expected| ≤ atol + rtol·|expected| everywhere and prints the largest
    /// absolute and relative differences under `what`.
    static func assertClose(_ actual: Tensor, _ expected: Tensor, atol: Float, rtol: Float, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        guard actual.shape == expected.shape else { return }
        var worstAbs: Float = 0, worstRel: Float = 0, failures = 0, first = -1
        for i in 0..<actual.count {
            let a = actual.scalars[i], e = expected.scalars[i], d = abs(a - e)
            worstAbs = max(worstAbs, d)
            if e != 0 { worstRel = max(worstRel, d / abs(e)) }
            if !(d <= atol + rtol * abs(e)) {
                failures += 1
                if first < 0 { first = i }
            }
        }
        print("unclip parity \(what): max abs \(worstAbs), max rel \(worstRel)")
        XCTAssertEqual(failures, 0, "\(what): \(failures) values out of tolerance, first [\(first)]: "
            + (first >= 0 ? "\(actual.scalars[first]) vs \(expected.scalars[first])" : ""), file: file, line: line)
    }

    /// Item `i` of a tensor stacked along its first dimension.
    static func item(_ t: Tensor, _ i: Int) -> Tensor {
        let n = t.count / t.shape[0]
        return Tensor(uncheckedShape: Array(t.shape.dropFirst()), scalars: Array(t.scalars[(i * n)..<((i + 1) * n)]))
    }
}

final class UnCLIPSchedulerTests: XCTestCase {
    typealias Config = UnCLIPScheduler.Configuration

    static let configurations: [(String, Config)] = [
        ("prior", .karloPrior), ("decoder", .karloDecoder), ("super_res", .karloSuperResolution),
        ("unclipped", Config(varianceType: .fixedSmallLog, predictionType: .epsilon, clipSample: false)),
    ]

    func assertThrows<T>(_ body: @autoclosure () throws -> T, _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? DalleError else { return XCTFail("unexpected error \(error)", file: file, line: line) }
            XCTAssertTrue("\(e)".contains(fragment), "'\(e)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testTablesMatchDiffusers() throws {
        let io = try UnCLIPGolden.file("schedulers")
        let scheduler = try UnCLIPScheduler(.karloPrior)
        let betas = try io.tensor("betas"), cumprod = try io.tensor("alphas_cumprod")
        XCTAssertEqual(scheduler.betas, betas.scalars)
        UnCLIPGolden.assertClose(Tensor(uncheckedShape: [1000], scalars: scheduler.alphasCumprod), cumprod,
                                 atol: 0, rtol: 1e-6, "alphas_cumprod")
    }

    func testTimestepsMatchDiffusers() throws {
        let io = try UnCLIPGolden.file("schedulers")
        let scheduler = try UnCLIPScheduler(.karloDecoder)
        for n in [2, 3, 7, 25, 1000] {
            XCTAssertEqual(try scheduler.timesteps(count: n), try io.tensor("timesteps_\(n)").scalars.map { Int($0) }, "\(n) steps")
        }
        XCTAssertEqual(Array(try scheduler.timesteps(count: 25).prefix(3)), [999, 957, 916])
        XCTAssertEqual(try scheduler.timesteps(count: 3), [999, 500, 0])  // 499.5 rounds to even
        XCTAssertEqual(try scheduler.timesteps(count: 1), [999])          // diffusers divides by zero here
        assertThrows(try scheduler.timesteps(count: 0), "0 steps")
        assertThrows(try scheduler.timesteps(count: -3), "-3 steps")
        assertThrows(try scheduler.timesteps(count: 1001), "1001 steps")
    }

    /// Each configuration's recorded chain, step by step from the recorded inputs, and the same
    /// chain fed its own outputs.
    func testStepsMatchDiffusers() throws {
        let io = try UnCLIPGolden.file("schedulers")
        for (name, config) in Self.configurations {
            let scheduler = try UnCLIPScheduler(config)
            let timesteps = try io.tensor("\(name).timesteps").scalars.map { Int($0) }
            let previous = try io.tensor("\(name).prev_timesteps").scalars.map { Int($0) }
            let outputs = try io.tensor("\(name).model_output"), samples = try io.tensor("\(name).sample")
            let noise = try io.tensor("\(name).noise"), expected = try io.tensor("\(name).prev_sample")
            let originals = try io.tensor("\(name).pred_original_sample")
            XCTAssertEqual(timesteps, try scheduler.timesteps(count: timesteps.count))
            var chained = UnCLIPGolden.item(samples, 0)
            for (i, t) in timesteps.enumerated() {
                // The pipeline passes prev_timestep=None on its last step (t = 0, so t − 1 = −1).
                let prev: Int? = i + 1 < timesteps.count ? previous[i] : nil
                let stepNoise: Tensor? = t > 0 ? UnCLIPGolden.item(noise, i) : nil
                let r = try scheduler.step(modelOutput: UnCLIPGolden.item(outputs, i), timestep: t,
                                           sample: UnCLIPGolden.item(samples, i), previousTimestep: prev, noise: stepNoise)
                UnCLIPGolden.assertClose(r.previousSample, UnCLIPGolden.item(expected, i), atol: 1e-5, rtol: 1e-5, "\(name) step \(i) (t=\(t))")
                UnCLIPGolden.assertClose(r.predictedOriginalSample, UnCLIPGolden.item(originals, i), atol: 1e-5, rtol: 1e-5,
                                         "\(name) step \(i) x0")
                chained = try scheduler.step(modelOutput: UnCLIPGolden.item(outputs, i), timestep: t, sample: chained,
                                             previousTimestep: prev, noise: stepNoise).previousSample
            }
            UnCLIPGolden.assertClose(chained, UnCLIPGolden.item(expected, timesteps.count - 1), atol: 1e-5, rtol: 1e-4,
                                     "\(name) chain of \(timesteps.count) steps fed its own outputs")
        }
    }

    /// Single steps: prev_timestep None (the table's β), long jumps, t = 0, straight to −1.
    func testSingleStepsMatchDiffusers() throws {
        let io = try UnCLIPGolden.file("schedulers")
        for (name, config) in Self.configurations {
            let scheduler = try UnCLIPScheduler(config)
            let timesteps = try io.tensor("extra.\(name).timestep").scalars.map { Int($0) }
            let previous = try io.tensor("extra.\(name).prev_timestep").scalars.map { Int($0) }
            for (i, t) in timesteps.enumerated() {
                let prev: Int? = previous[i] == -2 ? nil : previous[i]
                let r = try scheduler.step(
                    modelOutput: UnCLIPGolden.item(try io.tensor("extra.\(name).model_output"), i), timestep: t,
                    sample: UnCLIPGolden.item(try io.tensor("extra.\(name).sample"), i), previousTimestep: prev,
                    noise: UnCLIPGolden.item(try io.tensor("extra.\(name).noise"), i))
                UnCLIPGolden.assertClose(r.previousSample, UnCLIPGolden.item(try io.tensor("extra.\(name).prev_sample"), i),
                                         atol: 1e-5, rtol: 1e-5, "\(name) single step t=\(t) prev=\(String(describing: prev))")
            }
        }
    }

    func testConfigurationFromDiffusersJSON() throws {
        let io = try UnCLIPGolden.file("schedulers")
        for (name, config) in Self.configurations {
            let json = try XCTUnwrap(io.metadata["\(name).config"])
            XCTAssertEqual(try Config(json: json), config, name)
        }
        XCTAssertEqual(try Config(json: "{}"), Config())
        assertThrows(try Config(json: #"{"variance_type": "learned"}"#), "variance_type")
        assertThrows(try Config(json: #"{"prediction_type": "v_prediction"}"#), "prediction_type")
        assertThrows(try Config(json: #"{"beta_schedule": "linear"}"#), "beta_schedule")
        assertThrows(try Config(json: #"{"num_train_timesteps": 1.5}"#), "num_train_timesteps")
        assertThrows(try Config(json: #"{"clip_sample": 1}"#), "clip_sample")
        assertThrows(try Config(json: "[1]"), "not a JSON object")
        assertThrows(try Config(json: "{"), "scheduler config")
        assertThrows(try UnCLIPScheduler(Config(trainTimesteps: 1)), "num_train_timesteps 1")
        assertThrows(try UnCLIPScheduler(Config(trainTimesteps: 1 << 40)), "num_train_timesteps")
        assertThrows(try UnCLIPScheduler(Config(clipSampleRange: .nan)), "clip_sample_range")
        assertThrows(try UnCLIPScheduler(Config(clipSampleRange: 0)), "clip_sample_range")
    }

    func testBadStepInputsThrow() throws {
        let decoder = try UnCLIPScheduler(.karloDecoder), prior = try UnCLIPScheduler(.karloPrior)
        let sample = Tensor(zeros: [2, 3, 4, 4]), output = Tensor(zeros: [2, 6, 4, 4]), noise = Tensor(zeros: [2, 3, 4, 4])
        XCTAssertNoThrow(try decoder.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: 957, noise: noise))
        assertThrows(try decoder.step(modelOutput: sample, timestep: 999, sample: sample, previousTimestep: 957, noise: noise),
                     "channels twice")
        assertThrows(try prior.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: 957, noise: noise),
                     "model output of shape [2, 6, 4, 4]")
        assertThrows(try decoder.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: 957), "none was given")
        assertThrows(try decoder.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: 957,
                                      noise: Tensor(zeros: [2, 3, 4, 5])), "noise of shape [2, 3, 4, 5]")
        // t = 0 draws no noise; a wrong-sized one is still an error.
        XCTAssertNoThrow(try decoder.step(modelOutput: output, timestep: 0, sample: sample))
        assertThrows(try decoder.step(modelOutput: output, timestep: 0, sample: sample, noise: Tensor(zeros: [1])), "noise of shape")
        assertThrows(try decoder.step(modelOutput: output, timestep: 1000, sample: sample, noise: noise), "timestep 1000")
        assertThrows(try decoder.step(modelOutput: output, timestep: -1, sample: sample, noise: noise), "timestep -1")
        assertThrows(try decoder.step(modelOutput: output, timestep: 5, sample: sample, previousTimestep: 5, noise: noise),
                     "previous timestep 5")
        assertThrows(try decoder.step(modelOutput: output, timestep: 5, sample: sample, previousTimestep: -2, noise: noise),
                     "previous timestep -2")
        assertThrows(try prior.step(modelOutput: Tensor(zeros: [8]), timestep: 5, sample: Tensor(zeros: [8]), noise: Tensor(zeros: [8])),
                     "sample of shape [8]")
        assertThrows(try prior.step(modelOutput: Tensor(zeros: [0, 8]), timestep: 5, sample: Tensor(zeros: [0, 8])), "sample of shape")
        var bad = output
        bad.scalars[17] = .nan
        assertThrows(try decoder.step(modelOutput: bad, timestep: 999, sample: sample, previousTimestep: 957, noise: noise),
                     "model output holds nan at index 17")
        var badSample = sample
        badSample.scalars[3] = -.infinity
        assertThrows(try decoder.step(modelOutput: output, timestep: 999, sample: badSample, previousTimestep: 957, noise: noise),
                     "sample holds -inf")
        var badNoise = noise
        badNoise.scalars[0] = .nan
        assertThrows(try decoder.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: 957, noise: badNoise),
                     "noise holds nan")
        // One step straight to −1 (the one-step run) takes no noise and stays finite.
        let one = try decoder.step(modelOutput: output, timestep: 999, sample: sample, previousTimestep: -1)
        XCTAssertTrue(one.previousSample.scalars.allSatisfy { $0.isFinite })
        XCTAssertFalse(UnCLIPScheduler.addsNoise(timestep: 999, previousTimestep: -1))
        XCTAssertTrue(UnCLIPScheduler.addsNoise(timestep: 1, previousTimestep: 0))
        XCTAssertFalse(UnCLIPScheduler.addsNoise(timestep: 0, previousTimestep: -1))
    }
}
