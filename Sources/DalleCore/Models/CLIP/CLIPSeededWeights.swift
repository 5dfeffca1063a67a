#if canImport(Glibc)
import Glibc
#endif

/// Random CLIP weights that Python can reproduce bit for bit (tools/make_golden_clip.py),
/// so golden tests and benchmarks at full ViT-B/32 size need no weight files.
///
/// Tensor `name` draws from its own SplitMix64 stream seeded with `seed ^ fnv1a64(name)`:
/// u = Float(next() >> 40) · 2⁻²⁴, value = offset + (2u - 1) · half, all in float32, with
/// - "logit_scale": ln(1/0.07), no draw;
/// - LayerNorm weights ("ln_*.weight"): offset 1, half 0.1;
/// - other vectors (biases, class embedding): offset 0, half 0.1;
/// - "proj" / "text_projection" ([in, out]): half 1/√in;
/// - other matrices ([out, in, …]): half 1/√(product of all but the first dimension).
public struct CLIPSeededWeights: WeightStore {
    public let seed: UInt64
    public let config: CLIPConfig

    public init(config: CLIPConfig, seed: UInt64) {
        self.config = config
        self.seed = seed
    }

    /// Every parameter name of `config` with its shape.
    public static func parameterShapes(_ c: CLIPConfig) -> [(name: String, shape: [Int])] {
        func block(_ prefix: String, _ w: Int) -> [(String, [Int])] {
            [("\(prefix).attn.in_proj_weight", [3 * w, w]), ("\(prefix).attn.in_proj_bias", [3 * w]),
             ("\(prefix).attn.out_proj.weight", [w, w]), ("\(prefix).attn.out_proj.bias", [w]),
             ("\(prefix).ln_1.weight", [w]), ("\(prefix).ln_1.bias", [w]),
             ("\(prefix).mlp.c_fc.weight", [4 * w, w]), ("\(prefix).mlp.c_fc.bias", [4 * w]),
             ("\(prefix).mlp.c_proj.weight", [w, 4 * w]), ("\(prefix).mlp.c_proj.bias", [w]),
             ("\(prefix).ln_2.weight", [w]), ("\(prefix).ln_2.bias", [w])]
        }
        let vw = c.visionWidth, tw = c.textWidth, p = c.visionPatchSize
        var list: [(String, [Int])] = [
            ("clip.visual.conv1.weight", [vw, 3, p, p]), ("clip.visual.class_embedding", [vw]),
            ("clip.visual.positional_embedding", [c.gridSize * c.gridSize + 1, vw]),
            ("clip.visual.ln_pre.weight", [vw]), ("clip.visual.ln_pre.bias", [vw]),
        ]
        for i in 0..<c.visionLayers { list += block("clip.visual.transformer.resblocks.\(i)", vw) }
        list += [("clip.visual.ln_post.weight", [vw]), ("clip.visual.ln_post.bias", [vw]),
                 ("clip.visual.proj", [vw, c.embedDim]),
                 ("clip.token_embedding.weight", [c.vocabSize, tw]), ("clip.positional_embedding", [c.contextLength, tw])]
        for i in 0..<c.textLayers { list += block("clip.transformer.resblocks.\(i)", tw) }
        list += [("clip.ln_final.weight", [tw]), ("clip.ln_final.bias", [tw]),
                 ("clip.text_projection", [tw, c.embedDim]), ("clip.logit_scale", [])]
        return list.map { (name: $0.0, shape: $0.1) }
    }

    public var names: [String] { CLIPSeededWeights.parameterShapes(config).map(\.name) }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let expected = CLIPSeededWeights.parameterShapes(config).first(where: { $0.name == name }) else {
            throw DalleError.badFile("missing tensor '\(name)'")
        }
        guard expected.shape == shape else {
            throw DalleError.badFile("tensor '\(name)' has shape \(expected.shape), expected \(shape)")
        }
        return CLIPSeededWeights.draw(name: name, shape: shape, seed: seed)
    }

    /// The values of tensor `name` (see the type's documentation).
    public static func draw(name: String, shape: [Int], seed: UInt64) -> Tensor {
        let count = shape.reduce(1, *)
        if shape.isEmpty { return Tensor(uncheckedShape: [], scalars: [Float(log(1 / 0.07))]) }
        let offset: Float, half: Float
        let last = name.split(separator: ".").last.map(String.init) ?? name
        if shape.count == 1 {
            let isNormWeight = last == "weight" && name.split(separator: ".").dropLast().last?.hasPrefix("ln_") == true
            (offset, half) = (isNormWeight ? 1 : 0, 0.1)
        } else if last == "proj" || last == "text_projection" {
            (offset, half) = (0, Float(1 / Double(shape[0]).squareRoot()))
        } else {
            (offset, half) = (0, Float(1 / Double(shape.dropFirst().reduce(1, *)).squareRoot()))
        }
        var state = seed ^ fnv1a64(name)
        var scalars = [Float](repeating: 0, count: count)
        for i in 0..<count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let u = Float(z >> 40) * 0x1p-24
            scalars[i] = offset + (u * 2 - 1) * half
        }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    /// 64-bit FNV-1a of the UTF-8 bytes of `text`.
    static func fnv1a64(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return h
    }
}
