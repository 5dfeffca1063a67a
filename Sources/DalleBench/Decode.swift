import DalleCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: decode

/// The decode benchmark's transformer: DALLE-pytorch's shape at about 320 M parameters
/// (dim 1024, depth 12, 16 heads of 64, 32 text + 16×16 image tokens, 8192 codes), or a
/// small one for a quick check.
func decodeConfig(_ name: String) -> TransformerConfig? {
    switch name {
    case "320m":
        return TransformerConfig(dim: 1024, depth: 12, heads: 16, dimHead: 64, textSeqLen: 32, numTextTokens: 49408,
                                 numImageTokens: 8192, imageFmapSize: 16)
    case "small":
        return TransformerConfig(dim: 256, depth: 4, heads: 4, dimHead: 64, textSeqLen: 32, numTextTokens: 1000,
                                 numImageTokens: 1024, imageFmapSize: 8)
    default: return nil
    }
}

/// Writes the random-weight transformer `config` to `path` with its weights stored as
/// `format` ("F32", "F16", "BF16"; or "Q8_0" / "Q4_0": linear layers quantized, the rest
/// f16, as `dalle bundle --dtype q8|q4` stores them). The rotary table stays f32. Returns
/// false when `format` names none of these.
func writeDecodeModel(_ config: TransformerConfig, format: String, path: String) throws -> Bool {
    let quantization = QuantizedType(rawValue: format.lowercased())
    guard let dtype = quantization != nil ? .f16 : DType(rawValue: format) else { return false }
    let weights = DalleTransformer.randomWeights(config: config, seed: 1)
    var writer = SafetensorsWriter()
    for name in weights.names {
        let t = try weights.tensor(name, shape: weights.tensors[name]?.shape ?? [])
        if let quantization, TrainingSetup.isQuantizable(name, shape: t.shape) {
            try writer.add(name, t, quantizedAs: quantization)
        } else {
            try writer.add(name, t, as: name == DalleTransformer.rotaryTableName ? .f32 : dtype)
        }
    }
    try writer.write(to: path)
    return true
}

/// Resident and peak resident memory of this process, MiB (from /proc/self/status).
func residentMiB() -> (now: Double, peak: Double) {
    guard let file = fopen("/proc/self/status", "r") else { return (0, 0) }
    defer { fclose(file) }
    var now = 0.0, peak = 0.0
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, file) != nil {
        let text = String(cString: line)
        let kib = Double(text.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        if text.hasPrefix("VmRSS:") { now = kib / 1024 }
        if text.hasPrefix("VmHWM:") { peak = kib / 1024 }
    }
    return (now, peak)
}

/// Read bandwidth in GB/s: the best of five sums of a 1 GiB buffer split over the pool.
func readBandwidth(pool: ThreadPool) -> Double {
    let count = 1 << 28
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 1, count: count)
    var best = Double.infinity
    var sink: Float = 0
    for _ in 0..<5 {
        let start = now()
        var partial = [Float](repeating: 0, count: pool.threads)
        partial.withUnsafeMutableBufferPointer { out in
            pool.parallelForEach(pool.threads) { part in
                let lo = count * part / pool.threads, hi = count * (part + 1) / pool.threads
                var acc = SIMD16<Float>()
                var i = lo
                while i + 16 <= hi { acc += UnsafeRawPointer(buffer + i).loadUnaligned(as: SIMD16<Float>.self); i += 16 }
                out[part] = acc.sum()
            }
        }
        best = min(best, now() - start)
        sink += partial.reduce(0, +)
    }
    if sink == 42 { print("#") }
    return Double(count * 4) / best / 1e9
}

/// Loads the model at `path` (memory-mapped), then times per-token decoding of `batch`
/// sequences after a 32-token prompt. Prints one tab-separated row.
func benchDecode(config: TransformerConfig, path: String, batch: Int, tokens: Int, pool: ThreadPool) throws {
    let before = residentMiB().now
    let loadStart = now()
    let file = try SafetensorsFile(path: path)
    let model = try DalleTransformer(config: config, weights: file)
    let loadSeconds = now() - loadStart
    let loaded = residentMiB().now - before
    var fileBytes = 0.0, matrixBytes = 0.0, parameters = 0
    for name in file.names {
        guard let info = file.info(name) else { continue }
        let bytes = Double(info.shape.reduce(1, *) * info.dtype.byteSize)
        let shape = try file.shape(of: name)
        fileBytes += bytes
        parameters += shape.reduce(1, *)
        // Embedding tables are read a row at a time; every other matrix is read whole per step.
        if shape.count == 2, !name.hasSuffix("_emb.weight") { matrixBytes += bytes }
    }
    let text = [Int32](repeating: 5, count: batch * config.textSeqLen)
    var cache = model.makeCache(batch: batch)
    _ = try model.prefill(text: text, image: [], batch: batch, cache: &cache, pool: pool)
    var token = [Int32](repeating: 1, count: batch)
    _ = try model.step(imageTokens: token, cache: &cache, pool: pool)  // warm-up
    let start = now(), cpuStart = cpuNow()
    for i in 0..<tokens {
        token = [Int32](repeating: Int32(i % config.numImageTokens), count: batch)
        _ = try model.step(imageTokens: token, cache: &cache, pool: pool)
    }
    let perToken = (now() - start) / Double(tokens), cpuPerToken = (cpuNow() - cpuStart) / Double(tokens)
    let bandwidth = readBandwidth(pool: pool)
    let bound = matrixBytes / (bandwidth * 1e9)
    let logits = "transformer.to_logits.1.weight"
    let dtype = file.quantization(logits)?.rawValue ?? file.info(logits)?.dtype.rawValue ?? "?"
    print("dtype\tparams_M\tfile_MiB\tload_s\tloaded_RSS_MiB\tbatch\tms_per_step\tbound_ms\tof_bound\tread_GBps\tcpu_ms_per_step")
    let row = [dtype, rounded(Double(parameters) / 1e6, 1), rounded(fileBytes / 1048576, 0), rounded(loadSeconds, 3),
               rounded(loaded, 0), "\(batch)", rounded(perToken * 1000, 2), rounded(bound * 1000, 2),
               rounded(bound / perToken, 2), rounded(bandwidth, 1), rounded(cpuPerToken * 1000, 2)]
    print(row.joined(separator: "\t"))
}

/// `x` with `digits` decimals.
func rounded(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = (x * scale).rounded()
    let whole = Int(n / scale), frac = Int(abs(n).truncatingRemainder(dividingBy: scale))
    guard digits > 0 else { return "\(whole)" }
    let digitsText = String(frac)
    return (n < 0 && whole == 0 ? "-" : "") + "\(whole)." + String(repeating: "0", count: digits - digitsText.count) + digitsText
}
