import CDalle
import DalleCore

@_cdecl("dalle_eval_default_params")
public func dalle_eval_default_params() -> dalle_eval_params {
    let defaults = ShapesWorld.EvaluationOptions()
    var params = dalle_eval_params()
    params.struct_size = UInt32(MemoryLayout<dalle_eval_params>.size)
    params.candidates = UInt32(defaults.candidates)
    params.seed = defaults.seed
    params.per_template = UInt32(defaults.perTemplate)
    params.per_held_out_pair = UInt32(defaults.perHeldOutPair)
    params.reconstruction_samples = UInt32(defaults.reconstructionSamples)
    params.temperature = defaults.sampling.temperature
    params.top_k = Int32(defaults.sampling.topK)
    params.top_p = defaults.sampling.topP
    params.cond_scale = defaults.condScale
    params.likelihood_weight = DALLE_LIKELIHOOD_WEIGHT_MODEL
    return params
}

/// The Shapes World evaluation with the context's model; fills the caller's report.
@_cdecl("dalle_shapes_eval")
public func dalle_shapes_eval(_ ctx: OpaquePointer?, _ params: UnsafePointer<dalle_eval_params>?,
                              _ outReport: UnsafeMutablePointer<dalle_eval_report>?) -> dalle_status {
    withContext("dalle_shapes_eval", ctx) { box in
        guard let outReport else { throw DalleError.invalidArgument("out_report is NULL") }
        let reportSize = Int(UnsafeRawPointer(outReport).load(as: UInt32.self))
        guard reportSize >= MemoryLayout<UInt32>.size else {
            throw DalleError.invalidArgument("out_report->struct_size is \(reportSize); set it to sizeof(dalle_eval_report) (\(MemoryLayout<dalle_eval_report>.size))")
        }
        let size = min(reportSize, MemoryLayout<dalle_eval_report>.size)
        var report = dalle_eval_report()
        report.struct_size = UInt32(size)
        func publish() { withUnsafeBytes(of: &report) { UnsafeMutableRawPointer(outReport).copyMemory(from: $0.baseAddress!, byteCount: size) } }
        publish()  // zeroed until the run succeeds
        // Callers built before likelihood_weight was appended pick by CLIP alone, as they did.
        var defaults = dalle_eval_default_params()
        if params != nil { defaults.likelihood_weight = 0 }
        let p = try readParams(params, defaults: defaults, name: "dalle_eval_params", minimumSize: evalParamsMinimumSize)
        let likelihoodWeight = box.session.model.likelihoodWeight(for: p.likelihood_weight)
        let options = ShapesWorld.EvaluationOptions(
            candidates: Int(p.candidates), seed: p.seed == DALLE_SEED_RANDOM ? box.session.seed : p.seed,
            perTemplate: Int(p.per_template), perHeldOutPair: Int(p.per_held_out_pair),
            sampling: SamplingOptions(temperature: p.temperature, topK: Int(p.top_k), topP: p.top_p),
            condScale: p.cond_scale, likelihoodWeight: likelihoodWeight, reconstructionSamples: Int(p.reconstruction_samples))
        let (callback, userData) = p.progress != nil ? (p.progress, p.progress_user_data) : (box.progress, box.progressUserData)
        let result = try box.session.evaluateShapesWorld(
            options, progress: progressHandler(callback, userData, phase: Int32(DALLE_PHASE_EVAL)))

        report.has_clip = result.hasCLIP ? 1 : 0
        report.one_object = cGroup(result.score(for: .single))
        report.counting = cGroup(result.score(for: .counting))
        report.relation = cGroup(result.score(for: .relation))
        report.held_out = cGroup(result.score(for: .heldOut))
        report.total = cGroup(result.total)
        report.reconstruction_images = UInt32(clamping: result.reconstructionImages)
        report.reconstruction_passed = UInt32(clamping: result.reconstructionPassed)
        publish()
    }
}

/// Writes the judged candidate set of the first `captions` training-stream captions to `outPath`.
@_cdecl("dalle_shapes_candidates")
public func dalle_shapes_candidates(_ ctx: OpaquePointer?, _ params: UnsafePointer<dalle_eval_params>?, _ captions: UInt32,
                                    _ outPath: UnsafePointer<CChar>?) -> dalle_status {
    withContext("dalle_shapes_candidates", ctx) { box in
        let path = try utf8String(outPath, name: "out_path")
        let p = try readParams(params, defaults: dalle_eval_default_params(), name: "dalle_eval_params",
                               minimumSize: evalParamsMinimumSize)
        let (callback, userData) = p.progress != nil ? (p.progress, p.progress_user_data) : (box.progress, box.progressUserData)
        let set = try box.session.makeShapesCandidateSet(
            captions: Int(captions), count: Int(p.candidates), seed: p.seed == DALLE_SEED_RANDOM ? box.session.seed : p.seed,
            sampling: SamplingOptions(temperature: p.temperature, topK: Int(p.top_k), topP: p.top_p), condScale: p.cond_scale,
            progress: progressHandler(callback, userData, phase: Int32(DALLE_PHASE_EVAL)))
        try set.write(to: path)
    }
}

/// Callers built before likelihood_weight was appended pass the shorter struct.
private let evalParamsMinimumSize = MemoryLayout<dalle_eval_params>.offset(of: \.likelihood_weight) ?? 0

private func cGroup(_ score: ShapesWorld.GroupScore) -> dalle_eval_group {
    dalle_eval_group(captions: UInt32(clamping: score.captions), candidates: UInt32(clamping: score.candidates),
                     passed_best_by_clip: score.passedBestByCLIP.map { Int32(clamping: $0) } ?? -1,
                     passed_candidates: UInt32(clamping: score.passedCandidates), passed_any: UInt32(clamping: score.passedAny))
}
