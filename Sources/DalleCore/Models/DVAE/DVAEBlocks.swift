#if canImport(Glibc)
import Glibc
#endif

/// What the dVAE's encoder and decoder share: its res-block (`EncoderBlock` / `DecoderBlock` in
/// `dall_e`, a `ConvResBlock`), its convolutions' checkpoint keys, and its reference initialisation.

extension ConvResBlock {
    /// The dVAE's res-block under `prefix` (e.g. "dvae.encoder.blocks.group_1.block_1"):
    /// id_path(x) + post_gain · res_path(x), where res_path is four convolutions each preceded by a
    /// ReLU (`res_path.conv_1` … `conv_4`, kernels 3,3,3,1 in the encoder and 1,3,3,3 in the decoder,
    /// width out/4 inside) and id_path is a 1×1 convolution when the width changes (else the identity).
    init(dVAE prefix: String, inChannels: Int, outChannels: Int, kernelSizes: [Int],
         postGain: Float, loader: StrictWeightLoader) throws {
        let mid = outChannels / 4
        let idPath = inChannels == outChannels ? nil
            : try loader.conv(prefix + ".id_path", in: inChannels, out: outChannels, kernel: 1)
        let convs = try kernelSizes.enumerated().map { i, k in
            try loader.conv(prefix + ".res_path.conv_\(i + 1)", in: i == 0 ? inChannels : mid,
                            out: i == kernelSizes.count - 1 ? outChannels : mid, kernel: k)
        }
        self.init(convs: convs, shortcut: idPath, reluFirst: true, gain: postGain)
    }
}

extension StrictWeightLoader {
    /// The reference `Conv2d` under `prefix`: weight `w` [out, in, k, k], bias `b` [out].
    func conv(_ prefix: String, in n: Int, out m: Int, kernel k: Int) throws -> Conv2d {
        try Conv2d(prefix, in: n, out: m, kernel: k, weightKey: "w", biasKey: "b", loader: self)
    }
}

/// A `WeightStore` that makes up the reference initialisation for every tensor asked
/// for — weights (`….w`, shape [out, in, k, k]) drawn from N(0, 1/(in·k²)), biases
/// zero — from a seeded generator, and keeps what it made.
final class DVAEReferenceInit: WeightStore {
    private var rng: SplitMix64
    private(set) var made: [String: Tensor] = [:]

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    var names: [String] { made.keys.sorted() }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        var t = Tensor(zeros: shape)
        if shape.count == 4 {
            let std = 1 / Double(shape[1] * shape[2] * shape[3]).squareRoot()
            for i in 0..<t.count { t.scalars[i] = Float(rng.nextGaussian() * std) }
        }
        made[name] = t
        return t
    }
}

/// SplitMix64 (Steele, Lea & Flood), a small seeded generator for reproducible weights.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    mutating func nextUnit() -> Double { (Double(next() >> 11) + 1) * 0x1p-53 }

    /// A standard normal sample (Box–Muller).
    mutating func nextGaussian() -> Double {
        let r = (-2 * log(nextUnit())).squareRoot()
        return r * cos(2 * Double.pi * nextUnit())
    }
}
