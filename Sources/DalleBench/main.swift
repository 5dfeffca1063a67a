// dalle-bench: timings of libdalle's kernels.
//
//   dalle-bench gemm [--threads N]   GFLOPS of square and conv-shaped GEMMs, then Linear with f32/bf16/q8_0 weights
//   dalle-bench conv [--threads N]   the full dVAE encoder's and decoder's layer list at 256²
//   dalle-bench dvae [--threads N]   the real DVAE (OpenAI configuration, random weights):
//                                    encode and decode of one 256² image
//   dalle-bench decode-model CONFIG DTYPE FILE   writes a random-weight transformer (CONFIG 320m
//                                    or small) with its weights stored as DTYPE (F32, F16, BF16,
//                                    Q8_0, Q4_0)
//   dalle-bench decode CONFIG FILE [--batch B] [--threads N]   loads FILE memory-mapped and
//                                    times one decoding step of B sequences, beside the
//                                    machine's read-bandwidth bound; resident memory after load;
//                                    the last column is the process's CPU time per step
//
// Output lines are tab-separated so tools/bench.py can parse them. tools/bench.py runs it beside numpy / PyTorch, with
// glibc told to keep freed memory (GLIBC_TUNABLES=glibc.malloc.mmap_max=0:...) so that
// page faults on fresh tensors do not swamp the arithmetic.

import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock seconds.
func now() -> Double { seconds(CLOCK_MONOTONIC) }
/// CPU seconds of all this process's threads (less disturbed by other load on the machine).
func cpuNow() -> Double { seconds(CLOCK_PROCESS_CPUTIME_ID) }

func seconds(_ clock: clockid_t) -> Double {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Deterministic pseudo-random floats in [-scale, scale).
struct Random {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
    }
    mutating func tensor(_ shape: [Int], scale: Float) -> Tensor {
        var t = Tensor(zeros: shape)
        for i in 0..<t.count { t.scalars[i] = scale * next() }
        return t
    }
}

// MARK: gemm

/// (m, n, k) of the GEMMs timed: squares, then shapes the dVAE's convolutions produce
/// (C_out × H·W × C_in·k·k).
let gemmShapes: [(String, Int, Int, Int)] = [
    ("square", 256, 256, 256), ("square", 512, 512, 512),
    ("square", 1024, 1024, 1024), ("square", 2048, 2048, 2048),
    ("conv3x3 128@64²", 128, 4096, 1152), ("conv3x3 512@32²", 512, 1024, 4608),
    ("conv1x1 512->2048@32²", 2048, 1024, 512), ("conv1x1 2048->8192@32²", 8192, 1024, 2048),
    ("conv3x3 64@256²", 64, 65536, 576),
]

func benchGEMM(pool: ThreadPool) {
    var rng = Random(state: 1)
    print("kind\tm\tn\tk\tseconds\tgflops")
    for (name, m, n, k) in gemmShapes {
        let a = rng.tensor([m, k], scale: 1), b = rng.tensor([k, n], scale: 1)
        var c = Tensor(zeros: [m, n])
        let flops = 2 * Double(m) * Double(n) * Double(k)
        let reps = max(2, Int(4e9 / flops))
        var best = Double.infinity
        a.scalars.withUnsafeBufferPointer { ap in
            b.scalars.withUnsafeBufferPointer { bp in
                c.scalars.withUnsafeMutableBufferPointer { cp in
                    for _ in 0...reps {  // the first run warms up and is kept only if fastest
                        let t0 = now()
                        gemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                             c: cp.baseAddress!, ldc: n, accumulate: false, pool: pool)
                        best = min(best, now() - t0)
                    }
                }
            }
        }
        print("\(name)\t\(m)\t\(n)\t\(k)\t\(best)\t\(flops / best / 1e9)")
    }
}

// MARK: gemm with stored weights

/// (m, n, k) of the products timed through `Linear` (y[m, n] = x[m, k] · Wᵀ, W [n, k]) with W
/// stored as f32, bf16 and q8_0: squares, and the 320 M decode model's MLP projection
/// (dim 1024 → 4096) over a 256-token sequence.
let storedWeightShapes: [(String, Int, Int, Int)] = [
    ("square", 512, 512, 512), ("square", 1024, 1024, 1024), ("square", 2048, 2048, 2048),
    ("mlp 1024->4096", 256, 4096, 1024),
]

/// GFLOPS of `Linear` on each of `storedWeightShapes` for each stored format, in `benchGEMM`'s
/// columns: bf16 and q8_0 through the AVX2 path (widened to f32 while the GEMM packs them), then
/// through their AVX-512 dot-product kernel where the CPU has it (`DotProductKernels`).
func benchStoredWeights(pool: ThreadPool) throws {
    var rng = Random(state: 2)
    for (name, m, n, k) in storedWeightShapes {
        let w = rng.tensor([n, k], scale: 1), x = rng.tensor([m, k], scale: 1)
        for format in ["f32", "bf16", "q8_0"] {
            var writer = SafetensorsWriter()
            if let type = QuantizedType(rawValue: format) {
                try writer.add("w", w, quantizedAs: type)
            } else {
                try writer.add("w", w, as: format == "bf16" ? .bf16 : .f32)
            }
            let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
            let linear = Linear(weight: try file.weight("w", shape: [n, k]), bias: nil)
            let kernel: DotProductKernels = format == "bf16" ? .bf16 : format == "q8_0" ? .int8 : []
            let paths: [(DotProductKernels, String)] =
                kernel.isEmpty ? [([], "")]
                : [([], " (avx2)")] + (DotProductKernels.supported.contains(kernel) ? [(kernel, " (avx512 \(kernel))")] : [])
            for (enabled, label) in paths {
                DotProductKernels.enabled = enabled
                var y = [Float](repeating: 0, count: m * n)
                let flops = 2 * Double(m) * Double(n) * Double(k)
                let reps = max(2, Int(4e9 / flops))
                var best = Double.infinity
                x.scalars.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        for _ in 0...reps {
                            let t0 = now()
                            linear.apply(xp.baseAddress!, rows: m, into: yp.baseAddress!, pool: pool)
                            best = min(best, now() - t0)
                        }
                    }
                }
                print("\(format) weights\(label), \(name)\t\(m)\t\(n)\t\(k)\t\(best)\t\(flops / best / 1e9)")
            }
            DotProductKernels.enabled = DotProductKernels.supported
        }
    }
}

// MARK: conv (the dVAE's layer list with random weights)

/// OpenAI's dVAE, full configuration: 4 groups × 2 blocks, 256 hidden channels, 8192 tokens.
let groupChannels = [256, 512, 1024, 2048]
let blocksPerGroup = 2
let postGain: Float = 1 / Float(64)  // 1 / (groups · blocks)²

/// Times one stage; prints its name, output shape and seconds.
struct StageTimer {
    var verbose: Bool
    var total = 0.0, cpuTotal = 0.0, gflopTotal = 0.0
    /// Times `body`; `gflop` is the work it does, for the per-core GFLOPS column.
    mutating func time(_ name: String, gflop: Double = 0, _ body: () -> Tensor) -> Tensor {
        let t0 = now(), c0 = cpuNow()
        let y = body()
        let dt = now() - t0, dc = cpuNow() - c0
        total += dt; cpuTotal += dc; gflopTotal += gflop
        if verbose {
            let shape = y.shape.map(String.init).joined(separator: "x")
            print("\(name)\t\(shape)\t\(dt)\t\(dc)\t\(gflop)\t\(gflop / dc)")
        }
        return y
    }
}

/// Runs and times one convolution.
func timedConv(_ timer: inout StageTimer, _ name: String, _ x: Tensor, _ w: Conv2d,
               relu: Bool = false, residual: Tensor? = nil, scale: Float = 1, pool: ThreadPool) -> Tensor {
    let k = w.kernelSize
    let gflop = 2e-9 * Double(w.outChannels * w.inChannels * k * k) * Double(x.count / x.shape[1])
    return timer.time("\(name) \(k)x\(k) \(w.inChannels)->\(w.outChannels)", gflop: gflop) {
        conv2d(x, w, reluInput: relu, residual: residual, scale: scale, pool: pool)
    }
}

func convWeights(_ rng: inout Random, out: Int, in cin: Int, k: Int) -> Conv2d {
    let scale = 1 / Float(cin * k * k).squareRoot()
    do {
        return try Conv2d(weight: rng.tensor([out, cin, k, k], scale: scale),
                                 bias: rng.tensor([out], scale: 0.1))
    } catch {
        fatalError("\(error)")  // shapes above are valid
    }
}

/// One res-block: id(x) + postGain · res(x), `kernels` giving the res path's k per conv.
func resBlock(_ x: Tensor, _ rng: inout Random, out: Int, kernels: [Int], pool: ThreadPool,
              timer: inout StageTimer, name: String) -> Tensor {
    let cin = x.shape[1], hidden = out / 4
    let id = cin == out ? x
        : timedConv(&timer, "\(name) id", x, convWeights(&rng, out: out, in: cin, k: 1), pool: pool)
    var h = x
    for (i, k) in kernels.enumerated() {
        let hin = h.shape[1], hout = i == kernels.count - 1 ? out : hidden
        let w = convWeights(&rng, out: hout, in: hin, k: k)
        let last = i == kernels.count - 1
        h = timedConv(&timer, "\(name) conv\(i + 1)", h, w, relu: true, residual: last ? id : nil,
                      scale: last ? postGain : 1, pool: pool)
    }
    return h
}

/// Runs the encoder and decoder layer lists `passes` times (the first pass pays for
/// first-touch page faults); prints each layer of the last pass and every pass's totals.
func benchConv(pool: ThreadPool, passes: Int = 2) {
    print("stage\tshape\tseconds\tcpu_seconds\tgflop\tgflops_per_core")
    for pass in 1...passes { convPass(pool: pool, verbose: pass == passes) }
}

func convPass(pool: ThreadPool, verbose: Bool) {
    var rng = Random(state: 2)
    var enc = StageTimer(verbose: verbose)
    var x = rng.tensor([1, 3, 256, 256], scale: 1)
    let w0 = convWeights(&rng, out: groupChannels[0], in: 3, k: 7)
    x = timedConv(&enc, "enc input", x, w0, pool: pool)
    for (g, ch) in groupChannels.enumerated() {
        if g > 0 { let t = x; x = enc.time("enc maxpool") { maxPool2x2(t, pool: pool) } }
        for blk in 0..<blocksPerGroup {
            x = resBlock(x, &rng, out: ch, kernels: [3, 3, 3, 1], pool: pool, timer: &enc,
                         name: "enc g\(g + 1)b\(blk + 1)")
        }
    }
    let wOut = convWeights(&rng, out: 8192, in: groupChannels[3], k: 1)
    _ = timedConv(&enc, "enc output", x, wOut, relu: true, pool: pool)
    print("encoder total\t\t\(enc.total)\t\(enc.cpuTotal)\t\(enc.gflopTotal)\t\(enc.gflopTotal / enc.cpuTotal)")

    var dec = StageTimer(verbose: verbose)
    x = rng.tensor([1, 128, 32, 32], scale: 1)  // the one-hot 1x1 conv is a gather in the model
    for (g, ch) in groupChannels.reversed().enumerated() {
        if g > 0 { let t = x; x = dec.time("dec upsample") { upsampleNearest2x(t, pool: pool) } }
        for blk in 0..<blocksPerGroup {
            x = resBlock(x, &rng, out: ch, kernels: [1, 3, 3, 3], pool: pool, timer: &dec,
                         name: "dec g\(g + 1)b\(blk + 1)")
        }
    }
    let wRGB = convWeights(&rng, out: 6, in: groupChannels[0], k: 1)
    _ = timedConv(&dec, "dec output", x, wRGB, relu: true, pool: pool)
    print("decoder total\t\t\(dec.total)\t\(dec.cpuTotal)\t\(dec.gflopTotal)\t\(dec.gflopTotal / dec.cpuTotal)")
}

// MARK: dvae (the model itself)

func benchDVAE(pool: ThreadPool, passes: Int = 3) {
    let config = DVAEConfig.openAI
    let t0 = now()
    let model: DVAE
    do {
        model = try DVAE(config: config, weights: DVAE.randomWeights(config: config, seed: 1))
    } catch {
        print("dvae: \(error)")
        exit(1)
    }
    print("load\t\t\(now() - t0)")
    var rng = Random(state: 3)
    var image = rng.tensor([1, config.inputChannels, config.imageSize, config.imageSize], scale: 0.5)
    for i in 0..<image.count { image.scalars[i] += 0.5 }
    print("stage\tpass\tseconds\tcpu_seconds")
    for pass in 1...passes {
        do {
            var w0 = now(), c0 = cpuNow()
            let tokens = try model.encode(image, pool: pool)
            print("encode\t\(pass)\t\(now() - w0)\t\(cpuNow() - c0)")
            w0 = now(); c0 = cpuNow()
            _ = try model.decode(tokens: tokens, count: 1, pool: pool)
            print("decode\t\(pass)\t\(now() - w0)\t\(cpuNow() - c0)")
        } catch {
            print("dvae: \(error)")
            exit(1)
        }
    }
}

// MARK: main

var args = Array(CommandLine.arguments.dropFirst())
var threads = 0
if let i = args.firstIndex(of: "--threads"), i + 1 < args.count, let t = Int(args[i + 1]) {
    threads = t
    args.removeSubrange(i...(i + 1))
}
let pool = ThreadPool(threads: threads)
print("# threads\t\(pool.threads)")
switch args.first {
case "gemm":
    benchGEMM(pool: pool)
    do { try benchStoredWeights(pool: pool) } catch { print("gemm: \(error)"); exit(1) }
case "conv": benchConv(pool: pool)
case "dvae": benchDVAE(pool: pool)
case "decode-model":
    do {
        guard args.count == 4, let config = decodeConfig(args[1]), try writeDecodeModel(config, format: args[2], path: args[3]) else {
            print("usage: dalle-bench decode-model 320m|small F32|F16|BF16|Q8_0|Q4_0 FILE"); exit(2)
        }
    } catch { print("decode-model: \(error)"); exit(1) }
case "decode":
    var batch = 1
    if let i = args.firstIndex(of: "--batch"), i + 1 < args.count, let b = Int(args[i + 1]), b > 0 {
        batch = b
        args.removeSubrange(i...(i + 1))
    }
    guard args.count == 3, let config = decodeConfig(args[1]) else {
        print("usage: dalle-bench decode 320m|small FILE [--batch B] [--threads N]"); exit(2)
    }
    do { try benchDecode(config: config, path: args[2], batch: batch, tokens: 32, pool: pool) } catch {
        print("decode: \(error)"); exit(1)
    }
default:
    print("usage: dalle-bench gemm|conv|dvae|decode-model|decode [--threads N]")
    exit(2)
}
