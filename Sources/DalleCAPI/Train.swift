import CDalle
import DalleCore
import DalleImageIO

@_cdecl("dalle_train_default_params")
public func dalle_train_default_params() -> dalle_train_params {
    let defaults = TrainingOptions()
    var p = dalle_train_params()
    p.struct_size = UInt32(MemoryLayout<dalle_train_params>.size)
    p.steps = Int32(defaults.steps)
    p.batch_size = Int32(defaults.batchSize)
    p.learning_rate = defaults.learningRate
    p.warmup_steps = Int32(defaults.warmupSteps)
    p.weight_decay = defaults.weightDecay
    p.gradient_clip = defaults.gradientClip
    p.seed = defaults.seed
    p.validation_count = Int32(defaults.validationCount)
    p.checkpoint_every = Int32(defaults.checkpointEvery)
    p.vocab_size = 1024
    return p
}

/// One training stage (see `TrainingJob`); warnings and milestones go to the log callback.
@_cdecl("dalle_train")
public func dalle_train(_ params: UnsafePointer<dalle_train_params>?) -> dalle_status {
    var stopped = false
    let status = boundary("dalle_train") {
        guard params != nil else { throw DalleError.invalidArgument("params is NULL") }
        let p = try readParams(params, defaults: dalle_train_default_params(), name: "dalle_train_params",
                               minimumSize: MemoryLayout<dalle_train_params>.offset(of: \.dvae_schedule) ?? 0)
        var job = TrainingJob(stage: try utf8String(p.stage, name: "stage"), data: try utf8String(p.data, name: "data"),
                              outputPath: try utf8String(p.out_path, name: "out_path"))
        job.tokenizerPath = try p.tokenizer_path.map { try utf8String($0, name: "tokenizer_path") }
        job.dvaePath = try p.dvae_path.map { try utf8String($0, name: "dvae_path") }
        job.initPath = try p.init_path.map { try utf8String($0, name: "init_path") }
        for pair in try (p.config.map { try utf8String($0, name: "config") } ?? "").split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw DalleError.invalidArgument("config takes key=value pairs separated by commas, got '\(pair)'") }
            job.config[kv[0]] = kv[1]
        }
        job.dvaeSchedule = try TrainingJob.parseSchedule(try p.dvae_schedule.map { try utf8String($0, name: "dvae_schedule") } ?? "")
        guard p.n_threads >= 0, p.vocab_size >= Int32(BPETrainer.baseVocabularySize) else {
            throw DalleError.invalidArgument("n_threads must be ≥ 0 and vocab_size ≥ \(BPETrainer.baseVocabularySize)")
        }
        job.threads = Int(p.n_threads)
        job.vocabularySize = Int(p.vocab_size)
        var options = TrainingOptions()
        options.steps = Int(p.steps)
        options.batchSize = Int(p.batch_size)
        options.learningRate = p.learning_rate
        options.warmupSteps = Int(p.warmup_steps)
        options.weightDecay = p.weight_decay
        options.gradientClip = p.gradient_clip
        options.seed = p.seed
        options.validationCount = Int(p.validation_count)
        options.validateEvery = Int(p.checkpoint_every)
        options.checkpointEvery = Int(p.checkpoint_every)
        options.captionDropout = p.caption_dropout
        options.captionNegatives = Int(p.caption_negatives)
        options.frozenPrefixes = try (p.freeze.map { try utf8String($0, name: "freeze") } ?? "").split(separator: ",").map(String.init)
        try options.validate()
        job.options = options
        let finished = try job.run(log: { Log.write(dalle_log_level(DALLE_LOG_INFO), $0) }) { progress in
            guard let callback = p.progress else { return true }
            return callback(Int32(clamping: progress.step), Int32(clamping: progress.totalSteps), progress.loss,
                            progress.validationLoss ?? .nan, p.progress_user_data)
        }
        stopped = !finished
    }
    return status == dalle_status(DALLE_OK) && stopped ? dalle_status(DALLE_CANCELLED) : status
}

@_cdecl("dalle_bundle_default_params")
public func dalle_bundle_default_params() -> dalle_bundle_params {
    var params = dalle_bundle_params()
    params.struct_size = UInt32(MemoryLayout<dalle_bundle_params>.size)
    params.weight_type = dalle_weight_type(DALLE_WEIGHTS_F16)
    params.cond_scale = 1
    params.likelihood_weight = -1
    return params
}

@_cdecl("dalle_bundle_with_params")
public func dalle_bundle_with_params(_ partPaths: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int,
                                     _ outPath: UnsafePointer<CChar>?, _ params: UnsafePointer<dalle_bundle_params>?) -> dalle_status {
    boundary("dalle_bundle_with_params") {
        // Callers built before likelihood_weight was appended pass the shorter struct.
        let p = try readParams(params, defaults: dalle_bundle_default_params(), name: "dalle_bundle_params",
                               minimumSize: MemoryLayout<dalle_bundle_params>.offset(of: \.likelihood_weight) ?? 0)
        let dtype: DType, quantization: QuantizedType?
        switch p.weight_type {
        case dalle_weight_type(DALLE_WEIGHTS_F32): (dtype, quantization) = (.f32, nil)
        case dalle_weight_type(DALLE_WEIGHTS_F16): (dtype, quantization) = (.f16, nil)
        case dalle_weight_type(DALLE_WEIGHTS_BF16): (dtype, quantization) = (.bf16, nil)
        case dalle_weight_type(DALLE_WEIGHTS_Q8_0): (dtype, quantization) = (.f16, .q8_0)
        case dalle_weight_type(DALLE_WEIGHTS_Q4_0): (dtype, quantization) = (.f16, .q4_0)
        case let other: throw DalleError.invalidArgument("weight_type is \(other); use DALLE_WEIGHTS_F32 (0), DALLE_WEIGHTS_F16 (1), DALLE_WEIGHTS_BF16 (2), DALLE_WEIGHTS_Q8_0 (3) or DALLE_WEIGHTS_Q4_0 (4)")
        }
        try bundle(partPaths, count, outPath, dtype: dtype, quantization: quantization, condScale: p.cond_scale == 1 ? nil : p.cond_scale,
                   likelihoodWeight: p.likelihood_weight < 0 ? nil : p.likelihood_weight)
    }
}

@_cdecl("dalle_bundle")
public func dalle_bundle(_ partPaths: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int, _ outPath: UnsafePointer<CChar>?,
                         _ halfPrecision: Bool) -> dalle_status {
    boundary("dalle_bundle") {
        try bundle(partPaths, count, outPath, dtype: halfPrecision ? .f16 : .f32, quantization: nil, condScale: nil, likelihoodWeight: nil)
    }
}

private func bundle(_ partPaths: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int, _ outPath: UnsafePointer<CChar>?,
                    dtype: DType, quantization: QuantizedType?, condScale: Float?, likelihoodWeight: Float?) throws {
    guard let partPaths else { throw DalleError.invalidArgument("part_paths is NULL") }
    guard count >= 1, count <= 64 else { throw DalleError.invalidArgument("n_parts must be 1...64, got \(count)") }
    let parts = try (0..<count).map { try SafetensorsFile(path: utf8String(partPaths[$0], name: "part_paths[\($0)]")) }
    try TrainingSetup.assembleBundle(parts, dtype: dtype, quantization: quantization, to: try utf8String(outPath, name: "out_path"), condScale: condScale,
                                      likelihoodWeight: likelihoodWeight)
}
