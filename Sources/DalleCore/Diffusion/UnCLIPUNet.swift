/// The UNets of unCLIP (Karlo): the decoder (diffusers' `UNet2DConditionModel` with
/// `ResnetDownsampleBlock2D` / `SimpleCrossAttnDownBlock2D`, `UNetMidBlock2DSimpleCrossAttn`, the
/// matching up blocks, `class_embed_type="identity"`) and the super-resolution UNets (`UNet2DModel` with
/// the ResNet blocks only and a mid block without attention). Sinusoidal time embedding (flip, shift
/// from the config) → linear → SiLU → linear, plus the class embedding when given; conv_in; down blocks
/// (their outputs kept as skips); mid block; up blocks (each res-block takes the last skip, concatenated
/// on channels); GroupNorm → SiLU → conv_out. Other block types or options are `unsupported`.
public struct UnCLIPUNet: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var inChannels: Int, outChannels: Int
        public var channels: [Int]
        public var layersPerBlock: Int
        public var downBlocks: [String], upBlocks: [String], midBlock: String
        public var headWidth: Int
        public var groups: Int
        public var crossAttentionWidth: Int?
        public var scaleShift: Bool
        public var flipSinToCos: Bool
        public var frequencyShift: Int
        public var identityClassEmbedding: Bool

        /// Reads a decoder (`UNet2DConditionModel`) or super-resolution (`UNet2DModel`) `config.json`.
        public init(json text: String, part: String) throws {
            let config = try DiffusersConfig(json: text, part: part)
            func strings(_ key: String) throws -> [String] {
                guard let items = config[key]?.arrayValue?.compactMap(\.stringValue), !items.isEmpty else {
                    throw DalleError.badFile("\(part) config: '\(key)' is not a list of names")
                }
                return items
            }
            inChannels = try config.int("in_channels", 1...1024)
            outChannels = try config.int("out_channels", 1...1024)
            guard let list = config["block_out_channels"]?.arrayValue, !list.isEmpty else {
                throw DalleError.badFile("\(part) config: 'block_out_channels' is not a list")
            }
            channels = try list.map {
                guard let n = $0.exactInteger, (1...65536).contains(n) else { throw DalleError.badFile("\(part) config: block_out_channels holds \($0.serialized())") }
                return n
            }
            layersPerBlock = try config.int("layers_per_block", 1...64)
            downBlocks = try strings("down_block_types")
            upBlocks = try strings("up_block_types")
            guard downBlocks.count == channels.count, upBlocks.count == channels.count else {
                throw DalleError.badFile("\(part) config: \(channels.count) block widths, \(downBlocks.count) down and \(upBlocks.count) up blocks")
            }
            let conditioned = config["cross_attention_dim"] != nil
            midBlock = config["mid_block_type"]?.stringValue ?? (conditioned ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D")
            headWidth = config["attention_head_dim"]?.exactInteger ?? 8
            groups = try config.int("norm_num_groups", 1...1024)
            crossAttentionWidth = conditioned ? try config.int("cross_attention_dim", 1...65536) : nil
            scaleShift = config["resnet_time_scale_shift"] == .string("scale_shift")
            flipSinToCos = config["flip_sin_to_cos"] != .bool(false)
            frequencyShift = config["freq_shift"]?.exactInteger ?? 0
            identityClassEmbedding = config["class_embed_type"] == .string("identity")
            let supportedDown = ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"]
            let supportedUp = ["ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D"]
            if let bad = downBlocks.first(where: { !supportedDown.contains($0) }) ?? upBlocks.first(where: { !supportedUp.contains($0) }) {
                throw DalleError.unsupported("\(part) config: block type \(bad)")
            }
            if midBlock == "UNetMidBlock2D" {
                try config.expect("add_attention", .bool(false), "add_attention false")
            } else if midBlock != "UNetMidBlock2DSimpleCrossAttn" {
                throw DalleError.unsupported("\(part) config: mid block type \(midBlock)")
            }
            if crossAttentionWidth == nil, (downBlocks + upBlocks + [midBlock]).contains(where: { $0.contains("CrossAttn") }) {
                throw DalleError.badFile("\(part) config: cross-attention blocks without cross_attention_dim")
            }
            try config.expect("norm_eps", .number(1e-5))
            try config.expect("act_fn", .string("silu"))
            try config.expect("time_embedding_type", .string("positional"))
            for key in ["class_embed_type", "encoder_hid_dim", "addition_embed_type", "time_embedding_dim", "num_class_embeds"]
                where key != "class_embed_type" || !identityClassEmbedding {
                try config.expect(key, .null, "null")
            }
            try config.expect("only_cross_attention", .bool(false))
            try config.expect("center_input_sample", .bool(false))
            for key in ["mid_block_scale_factor", "resnet_out_scale_factor"] { try config.expect(key, .number(1)) }
            for key in ["conv_in_kernel", "conv_out_kernel"] { try config.expect(key, .number(3)) }
            for key in ["time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim"] { try config.expect(key, .null, "null") }
            try config.expect("resnet_skip_time_act", .bool(false))
        }
    }

    /// A block: res-blocks each optionally followed by attention, then an optional resampling res-block.
    struct Block: Sendable {
        var resnets: [ResnetBlock2D]
        var attentions: [AddedKVAttention]
        var resample: ResnetBlock2D?
    }

    public let configuration: Configuration
    let time1: Linear, time2: Linear, convIn: Conv2d, convOut: Conv2d
    let normOut: GroupNorm
    let down: [Block], up: [Block], mid: Block

    /// Loads `prefix` + diffusers' names; strict.
    public init(configuration c: Configuration, weights: WeightStore, prefix: String) throws {
        configuration = c
        let loader = StrictWeightLoader(weights), c0 = c.channels[0], time = 4 * c0, g = c.groups
        time1 = try Linear(prefix + "time_embedding.linear_1", inputs: c0, outputs: time, bias: true, loader: loader)
        time2 = try Linear(prefix + "time_embedding.linear_2", inputs: time, outputs: time, bias: true, loader: loader)
        convIn = try Conv2d(prefix + "conv_in", in: c.inChannels, out: c0, kernel: 3, loader: loader)
        func resnet(_ name: String, _ i: Int, _ o: Int, _ resample: ResnetBlock2D.Resample = .none) throws -> ResnetBlock2D {
            try ResnetBlock2D(prefix + name + ".", in: i, out: o, timeEmbedding: time, groups: g, scaleShift: c.scaleShift,
                              resample: resample, loader: loader)
        }
        func attention(_ name: String, _ width: Int) throws -> AddedKVAttention {
            try AddedKVAttention(prefix + name + ".", channels: width, headWidth: c.headWidth, context: c.crossAttentionWidth ?? 0,
                                 groups: g, loader: loader)
        }
        var downBlocks: [Block] = [], input = c0
        for (i, type) in c.downBlocks.enumerated() {
            let out = c.channels[i], p = "down_blocks.\(i)"
            let resnets = try (0..<c.layersPerBlock).map { try resnet("\(p).resnets.\($0)", $0 == 0 ? input : out, out) }
            let attentions = type.contains("CrossAttn") ? try (0..<c.layersPerBlock).map { try attention("\(p).attentions.\($0)", out) } : []
            let last = i == c.downBlocks.count - 1
            downBlocks.append(Block(resnets: resnets, attentions: attentions,
                                    resample: last ? nil : try resnet("\(p).downsamplers.0", out, out, .down)))
            input = out
        }
        down = downBlocks
        let deepest = c.channels[c.channels.count - 1]
        mid = Block(resnets: [try resnet("mid_block.resnets.0", deepest, deepest), try resnet("mid_block.resnets.1", deepest, deepest)],
                    attentions: c.midBlock == "UNetMidBlock2DSimpleCrossAttn" ? [try attention("mid_block.attentions.0", deepest)] : [],
                    resample: nil)
        let reversed = Array(c.channels.reversed())
        var upBlocks: [Block] = [], previous = reversed[0]
        for (i, type) in c.upBlocks.enumerated() {
            let out = reversed[i], skipIn = reversed[min(i + 1, reversed.count - 1)], p = "up_blocks.\(i)", layers = c.layersPerBlock + 1
            let resnets = try (0..<layers).map { j in
                try resnet("\(p).resnets.\(j)", (j == 0 ? previous : out) + (j == layers - 1 ? skipIn : out), out)
            }
            let attentions = type.contains("CrossAttn") ? try (0..<layers).map { try attention("\(p).attentions.\($0)", out) } : []
            let last = i == c.upBlocks.count - 1
            upBlocks.append(Block(resnets: resnets, attentions: attentions, resample: last ? nil : try resnet("\(p).upsamplers.0", out, out, .up)))
            previous = out
        }
        up = upBlocks
        normOut = try GroupNorm(prefix + "conv_norm_out", channels: c0, groups: g, loader: loader)
        convOut = try Conv2d(prefix + "conv_out", in: c0, out: c.outChannels, kernel: 3, loader: loader)
        try loader.rejectUnused(prefix: prefix, model: "unCLIP UNet")
    }

    /// An upper bound of the bytes one call on `batch` samples of height × width allocates: the
    /// skip connections plus a dozen activations of the widest level (a res-block's
    /// intermediates, a concatenation, attention's query, key, value and transposes).
    func workingBytes(batch: Int, height: Int, width: Int) -> Int {
        let c = configuration
        var skips = 0, widest = 0
        for (i, channels) in c.channels.enumerated() {
            let level = WorkingMemory.product(channels, height >> i, width >> i)
            skips = WorkingMemory.sum(skips, WorkingMemory.product(c.layersPerBlock + 1, level))
            widest = max(widest, level)
        }
        let ends = WorkingMemory.product(c.inChannels + c.outChannels, height, width)
        return WorkingMemory.product(batch, WorkingMemory.sum(skips, WorkingMemory.product(12, widest), ends), MemoryLayout<Float>.size)
    }

    /// The model output for `sample` [N, in, H, W] at `timestep`; the decoder also takes the class
    /// embedding [N, 4·c0] (text_proj's additive time embedding), the cross-attention `context`
    /// [N, L, cross width] and its mask (N·L, true for real tokens).
    public func callAsFunction(_ sample: Tensor, timestep: Int, classEmbedding: Tensor? = nil, context: Tensor? = nil,
                               contextMask: [Bool]? = nil, pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        let c = configuration, c0 = c.channels[0]
        guard sample.rank == 4, sample.shape[0] >= 1, sample.shape[1] == c.inChannels else {
            throw DalleError.invalidArgument("UNet: sample of shape \(sample.shape), expected [batch, \(c.inChannels), height, width]")
        }
        let n = sample.shape[0], factor = 1 << (c.channels.count - 1)
        guard sample.shape[2] % factor == 0, sample.shape[3] % factor == 0, sample.scalars.allSatisfy(\.isFinite) else {
            throw DalleError.invalidArgument("UNet: sample of \(sample.shape[2])x\(sample.shape[3]) (a multiple of \(factor)) with finite values")
        }
        let needsContext = c.crossAttentionWidth != nil
        if needsContext {
            guard let context, let contextMask, context.rank == 3, context.shape[0] == n, context.shape[2] == c.crossAttentionWidth,
                  contextMask.count == n * context.shape[1] else {
                throw DalleError.invalidArgument("UNet: the decoder needs a context [\(n), tokens, \(c.crossAttentionWidth ?? 0)] and its mask")
            }
        }
        if c.identityClassEmbedding {
            guard let classEmbedding, classEmbedding.shape == [n, 4 * c0] else {
                throw DalleError.invalidArgument("UNet: class embedding of shape \(classEmbedding?.shape ?? []), expected [\(n), \(4 * c0)]")
            }
        }
        try WorkingMemory.require(workingBytes(batch: n, height: sample.shape[2], width: sample.shape[3]), threads: pool.threads, for: "a UNet on \(n) samples")
        let sinusoid = try timestepEmbedding([Float](repeating: Float(timestep), count: n), dim: c0, flipSinToCos: c.flipSinToCos,
                                             downscaleFreqShift: Float(c.frequencyShift)).scalars
        var t = time1(sinusoid, rows: n, pool: pool)
        silu(&t)
        var embedding = time2(t, rows: n, pool: pool)
        if let classEmbedding { for i in 0..<embedding.count { embedding[i] += classEmbedding.scalars[i] } }

        func attend(_ a: AddedKVAttention, _ x: Tensor) -> Tensor {
            a(x, context: context ?? Tensor(zeros: [n, 0, 0]), contextMask: contextMask ?? [], pool: pool)
        }
        var x = conv2d(sample, convIn, pool: pool)
        var skips = [x]
        for block in down {
            for (j, resnet) in block.resnets.enumerated() {
                x = resnet(x, embedding: embedding, pool: pool)
                if j < block.attentions.count { x = attend(block.attentions[j], x) }
                skips.append(x)
            }
            if let resample = block.resample {
                x = resample(x, embedding: embedding, pool: pool)
                skips.append(x)
            }
        }
        x = mid.resnets[0](x, embedding: embedding, pool: pool)
        if let a = mid.attentions.first { x = attend(a, x) }
        x = mid.resnets[1](x, embedding: embedding, pool: pool)
        for block in up {
            for (j, resnet) in block.resnets.enumerated() {
                guard let skip = skips.popLast() else { throw DalleError.invalidArgument("UNet: skips exhausted") }
                x = resnet(concatenateChannels(x, skip), embedding: embedding, pool: pool)
                if j < block.attentions.count { x = attend(block.attentions[j], x) }
            }
            if let resample = block.resample { x = resample(x, embedding: embedding, pool: pool) }
        }
        return conv2d(normOut(x, silu: true, pool: pool), convOut, pool: pool)
    }
}

/// [N, Ca, H, W] and [N, Cb, H, W] to [N, Ca + Cb, H, W].
func concatenateChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
    let n = a.shape[0], plane = a.count / (n * a.shape[1]), sa = a.shape[1] * plane, sb = b.shape[1] * plane
    var out = [Float]()
    out.reserveCapacity(a.count + b.count)
    for i in 0..<n {
        out.append(contentsOf: a.scalars[(i * sa)..<((i + 1) * sa)])
        out.append(contentsOf: b.scalars[(i * sb)..<((i + 1) * sb)])
    }
    return Tensor(uncheckedShape: [n, a.shape[1] + b.shape[1], a.shape[2], a.shape[3]], scalars: out)
}
