#if canImport(Glibc)
import Glibc
#endif

/// DALLE-pytorch's (1.6.6) `DALLE` transformer: token and position embeddings, `depth`
/// pre-norm blocks (LayerScale · PreNorm(attention), LayerScale · PreNorm(GEGLU feed-forward),
/// optionally token-shifted and sandwich-normed), and `to_logits` (LayerNorm + Linear) with
/// DALLE-pytorch's logits mask.
///
/// Parameters are DALLE-pytorch's `state_dict` names (without the "vae." ones) under
/// "transformer.", e.g. "transformer.text_emb.weight",
/// "transformer.transformer.layers.layers.0.0.fn.norm.weight", "transformer.to_logits.1.bias".
///
/// Positions: 0 is <bos> (text id 0), 1...textSeqLen the text (id 0 there is padding and
/// becomes the per-position pad id numTextTokens + i), then image tokens in raster order.
public final class DalleTransformer: @unchecked Sendable {
    public let config: TransformerConfig

    /// [textVocab, dim] and [numImageTokens, dim].
    let textEmbedding: Embedding
    let imageEmbedding: Embedding
    /// Learned positions (nil with rotary): text [textLen, dim], image rows and columns [fmap, dim].
    let textPositions: Embedding?
    let imageRowPositions: Embedding?
    let imageColumnPositions: Embedding?
    /// The bundle name of DALLE-pytorch's rotary `pos_emb` buffer. It holds angles (image
    /// positions sit at text position 8192), so 16-bit files keep it in float32.
    public static let rotaryTableName = "transformer.transformer.pos_emb"
    /// Rotary tables [seqLen][rotaryDims] (cos and sin of DALLE-pytorch's `pos_emb` buffer).
    let rotaryCos: [Float]
    let rotarySin: [Float]
    let layers: [Layer]
    let attentions: [AttentionWeights]
    let feedForwards: [FeedForwardWeights]
    let outputNorm: LayerNorm
    /// `to_logits[1]` split into its text columns [0, textVocab) and image columns.
    let textLogits: Linear
    let imageLogits: Linear

    struct AttentionWeights {
        let qkv: Linear
        let out: Linear
    }

    struct FeedForwardWeights {
        let up: Linear
        let down: Linear
    }

    struct Layer {
        let type: AttentionType
        let attention: Int
        let feedForward: Int
        let attentionNorm: LayerNorm
        let attentionNormOut: LayerNorm?
        let attentionScale: [Float]
        let feedForwardNorm: LayerNorm
        let feedForwardNormOut: LayerNorm?
        let feedForwardScale: [Float]
    }

    /// Loads every parameter of `config` from `weights` strictly: a missing tensor, a wrong
    /// shape, an invalid configuration or an unused "transformer.*" tensor is an error.
    public init(config: TransformerConfig, weights: WeightStore) throws {
        try config.validate()
        self.config = config
        let c = config
        let load = StrictWeightLoader(weights)
        let p = "transformer."
        textEmbedding = try Embedding(p + "text_emb.weight", count: c.textVocab, width: c.dim, loader: load)
        imageEmbedding = try Embedding(p + "image_emb.weight", count: c.numImageTokens, width: c.dim, loader: load)
        if c.rotaryEmb {
            (textPositions, imageRowPositions, imageColumnPositions) = (nil, nil, nil)
            let table = try load.tensor(DalleTransformer.rotaryTableName, shape: [1, c.seqLen + 1, c.rotaryDims]).scalars
            (rotaryCos, rotarySin) = DalleTransformer.rotaryCosSin(table, c)
        } else {
            (rotaryCos, rotarySin) = ([], [])
            let f = c.imageFmapSize
            textPositions = try Embedding(p + "text_pos_emb.weight", count: c.textLen, width: c.dim, loader: load)
            imageRowPositions = Embedding(try load.weight(p + "image_pos_emb.weights.0", shape: [1, f, 1, c.dim]).viewed(as: [f, c.dim]))
            imageColumnPositions = Embedding(try load.weight(p + "image_pos_emb.weights.1", shape: [1, 1, f, c.dim]).viewed(as: [f, c.dim]))
        }

        func norm(_ name: String) throws -> LayerNorm { try LayerNorm(name, width: c.dim, loader: load) }
        func linear(_ name: String, inputs: Int, outputs: Int, bias: Bool) throws -> Linear {
            try Linear(name, inputs: inputs, outputs: outputs, bias: bias, loader: load)
        }
        var attentionIndex: [Int: Int] = [:], feedForwardIndex: [Int: Int] = [:]
        var attentions: [AttentionWeights] = [], feedForwards: [FeedForwardWeights] = []
        var layers: [Layer] = []
        for i in 0..<c.depth {
            let block = p + "transformer.layers.layers.\(i)."
            let attentionPath = block + c.blockModulePaths.attention, feedForwardPath = block + c.blockModulePaths.feedForward
            // Shared blocks appear under every layer's name; each copy must be there with its shape.
            let attention = AttentionWeights(
                qkv: try linear(attentionPath + "to_qkv", inputs: c.dim, outputs: 3 * c.innerDim, bias: false),
                out: try linear(attentionPath + "to_out.0", inputs: c.innerDim, outputs: c.dim, bias: true))
            let feedForward = FeedForwardWeights(
                up: try linear(feedForwardPath + "0", inputs: c.dim, outputs: 2 * c.ffHidden, bias: true),
                down: try linear(feedForwardPath + "3", inputs: c.ffHidden, outputs: c.dim, bias: true))
            let attentionId = c.attentionId(layer: i), feedForwardId = c.feedForwardId(layer: i)
            if attentionIndex[attentionId] == nil {
                attentionIndex[attentionId] = attentions.count
                attentions.append(attention)
            }
            if feedForwardIndex[feedForwardId] == nil {
                feedForwardIndex[feedForwardId] = feedForwards.count
                feedForwards.append(feedForward)
            }
            layers.append(Layer(
                type: c.attentionType(layer: i),
                attention: attentionIndex[attentionId] ?? 0,
                feedForward: feedForwardIndex[feedForwardId] ?? 0,
                attentionNorm: try norm(block + "0.fn.norm"),
                attentionNormOut: c.sandwichNorm ? try norm(block + "0.fn.norm_out") : nil,
                attentionScale: try load.weight(block + "0.scale", shape: [1, 1, c.dim]).floats(),
                feedForwardNorm: try norm(block + "1.fn.norm"),
                feedForwardNormOut: c.sandwichNorm ? try norm(block + "1.fn.norm_out") : nil,
                feedForwardScale: try load.weight(block + "1.scale", shape: [1, 1, c.dim]).floats()))
        }
        self.layers = layers
        self.attentions = attentions
        self.feedForwards = feedForwards
        outputNorm = try norm(p + "to_logits.0")
        let logits = try load.weight(p + "to_logits.1.weight", shape: [c.totalTokens, c.dim])
        let logitsBias = try load.weight(p + "to_logits.1.bias", shape: [c.totalTokens])
        textLogits = Linear(weight: logits.rows(0..<c.textVocab), bias: logitsBias.rows(0..<c.textVocab))
        imageLogits = Linear(weight: logits.rows(c.textVocab..<c.totalTokens), bias: logitsBias.rows(c.textVocab..<c.totalTokens))
        try load.rejectUnused(prefix: p, model: "transformer")
    }

    /// Random parameters for `config` (normal embeddings, 1/sqrt(fan-in) linears, perturbed
    /// norms and layer scales, the rotary table as DALLE-pytorch computes it), from a
    /// generator seeded with `seed`; for tests and benchmarks. Empty when `config` is invalid.
    public static func randomWeights(config c: TransformerConfig, seed: UInt64) -> InMemoryWeights {
        guard (try? c.validate()) != nil else { return InMemoryWeights() }
        var rng = SplitMix64(seed: seed)
        var tensors: [String: Tensor] = [:]
        func add(_ name: String, _ shape: [Int], mean: Float = 0, std: Float) {
            let n = shape.reduce(1, *)
            tensors["transformer." + name] = Tensor(uncheckedShape: shape, scalars: (0..<n).map { _ in mean + std * Float(rng.nextGaussian()) })
        }
        add("text_emb.weight", [c.textVocab, c.dim], std: 1)
        add("image_emb.weight", [c.numImageTokens, c.dim], std: 1)
        if c.rotaryEmb {
            tensors[DalleTransformer.rotaryTableName] = Tensor(uncheckedShape: [1, c.seqLen + 1, c.rotaryDims],
                                                                scalars: rotaryTable(c))
        } else {
            add("text_pos_emb.weight", [c.textLen, c.dim], std: 1)
            add("image_pos_emb.weights.0", [1, c.imageFmapSize, 1, c.dim], std: 1)
            add("image_pos_emb.weights.1", [1, 1, c.imageFmapSize, c.dim], std: 1)
        }
        func norm(_ name: String) {
            add(name + ".weight", [c.dim], mean: 1, std: 0.1)
            add(name + ".bias", [c.dim], std: 0.1)
        }
        func linear(_ name: String, inputs: Int, outputs: Int, bias: Bool) {
            let std = 1 / Float(inputs).squareRoot()
            add(name + ".weight", [outputs, inputs], std: std)
            if bias { add(name + ".bias", [outputs], std: std) }
        }
        var attentionCopy: [Int: String] = [:], feedForwardCopy: [Int: String] = [:]
        for i in 0..<c.depth {
            let block = "transformer.layers.layers.\(i)."
            let attentionPath = block + c.blockModulePaths.attention, feedForwardPath = block + c.blockModulePaths.feedForward
            for (sub, path) in [("0", attentionPath), ("1", feedForwardPath)] {
                norm(block + sub + ".fn.norm")
                if c.sandwichNorm { norm(block + sub + ".fn.norm_out") }
                add(block + sub + ".scale", [1, 1, c.dim], mean: 0.5, std: 0.1)
                let (id, isAttention) = sub == "0" ? (c.attentionId(layer: i), true) : (c.feedForwardId(layer: i), false)
                if let first = isAttention ? attentionCopy[id] : feedForwardCopy[id] {
                    for (name, t) in tensors where name.hasPrefix("transformer." + first) {
                        tensors["transformer." + path + name.dropFirst(("transformer." + first).count)] = t
                    }
                } else if isAttention {
                    attentionCopy[id] = path
                    linear(path + "to_qkv", inputs: c.dim, outputs: 3 * c.innerDim, bias: false)
                    linear(path + "to_out.0", inputs: c.innerDim, outputs: c.dim, bias: true)
                } else {
                    feedForwardCopy[id] = path
                    linear(path + "0", inputs: c.dim, outputs: 2 * c.ffHidden, bias: true)
                    linear(path + "3", inputs: c.ffHidden, outputs: c.dim, bias: true)
                }
            }
        }
        norm("to_logits.0")
        linear("to_logits.1", inputs: c.dim, outputs: c.totalTokens, bias: true)
        return InMemoryWeights(tensors)
    }

    /// cos and sin of a rotary table's first seqLen positions, [seqLen, rotaryDims] each.
    static func rotaryCosSin(_ table: [Float], _ c: TransformerConfig) -> (cos: [Float], sin: [Float]) {
        let used = table.prefix(c.seqLen * c.rotaryDims)
        return (used.map { Float(cos(Double($0))) }, used.map { Float(sin(Double($0))) })
    }

    /// DALLE-pytorch's rotary `pos_emb` ([seqLen + 1, rotaryDims], flattened): per position,
    /// text frequencies (image positions sit at text position 8192), then row and column
    /// "pixel" frequencies over linspace(-1, 1) (text sits at -10 on both axes).
    static func rotaryTable(_ c: TransformerConfig) -> [Float] {
        let half = (c.dimHead / 3) / 2, rotDim = c.dimHead / 3
        let textFreqs = (0..<half).map { Float(1 / pow(10000, Double(2 * $0) / Double(rotDim))) }
        let pixelFreqs = (0..<half).map { i -> Float in
            let t = half == 1 ? 0 : Double(i) / Double(half - 1)
            return Float((1 + t * 4) * Double.pi)
        }
        let f = c.imageFmapSize
        func axis(_ i: Int) -> Float { f == 1 ? -1 : Float(-1 + 2 * Double(i) / Double(f - 1)) }
        var table: [Float] = []
        for p in 0...(c.seqLen) {
            let isText = p < c.textLen
            let i = p - c.textLen
            let textPos: Float = isText ? Float(p) : 8192
            let (row, col): (Float, Float) = isText ? (-10, -10) : (axis(i / f), axis(i % f))
            for pos in [(textPos, textFreqs), (row, pixelFreqs), (col, pixelFreqs)] {
                for fr in pos.1 { table.append(pos.0 * fr); table.append(pos.0 * fr) }
            }
        }
        return table
    }

    // MARK: Public forward passes

    /// Masked logits as DALLE-pytorch's `forward(text, image)` returns them: text
    /// [batch, textSeqLen] ids (0 = padding), image [batch, n] image-token ids with
    /// 0 ≤ n ≤ imageSeqLen. Returns [batch, L, totalTokens] with L = min(1 + textSeqLen + n,
    /// seqLen): row t holds the logits at position t (0 = <bos>), predicting the token at
    /// position t + 1. Rows t < textSeqLen allow only text ids (image columns are
    /// -Float.greatestFiniteMagnitude), the rest only image ids (columns ≥ textVocab).
    public func logits(text: [Int32], image: [Int32], batch: Int, pool: ThreadPool) throws -> Tensor {
        let n = try imageTokenCount(image, batch: batch, limit: config.imageSeqLen)
        var cache = makeCache(batch: batch)
        let length = min(config.textLen + n, config.seqLen)
        _ = try checkedCount([batch, length, config.totalTokens], "the logits")
        try checkWorkspace(batch: batch, length: length, threads: pool.threads)
        try cache.allocate(config)
        let ids = try sequenceIds(text: text, image: image, batch: batch, imageCount: n, length: length)
        let hidden = run(ids: ids, count: length, cache: &cache, pool: pool)
        let c = config
        let rows = batch * length
        var textPart = [Float](repeating: 0, count: rows * c.textVocab)
        var imagePart = [Float](repeating: 0, count: rows * c.numImageTokens)
        finalLogits(hidden: hidden, rows: rows, text: &textPart, image: &imagePart, pool: pool)
        var out = Tensor(zeros: [batch, length, c.totalTokens])
        let masked = -Float.greatestFiniteMagnitude
        out.scalars.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                let position = r % length, row = o.baseAddress.unsafelyUnwrapped + r * c.totalTokens
                let predictsText = position < c.textSeqLen
                for j in 0..<c.textVocab { row[j] = predictsText ? textPart[r * c.textVocab + j] : masked }
                for j in 0..<c.numImageTokens {
                    row[c.textVocab + j] = predictsText ? masked : imagePart[r * c.numImageTokens + j]
                }
            }
        }
        return out
    }

    /// An empty cache for `batch` sequences.
    public func makeCache(batch: Int) -> TransformerCache { TransformerCache(batch: max(batch, 0)) }

    /// Feeds <bos>, the text [batch, textSeqLen] and an image prefix [batch, n]
    /// (0 ≤ n < imageSeqLen) into an empty `cache`; returns the logits for image token n,
    /// [batch, numImageTokens] (the image-token columns of the last position, no mask needed).
    public func prefill(text: [Int32], image: [Int32], batch: Int, cache: inout TransformerCache,
                        pool: ThreadPool) throws -> Tensor {
        guard cache.batch == batch, cache.length == 0 else {
            throw DalleError.invalidArgument("prefill needs an empty cache made for batch \(batch) (this one: batch \(cache.batch), \(cache.length) positions)")
        }
        let n = try imageTokenCount(image, batch: batch, limit: config.imageSeqLen - 1)
        let length = config.textLen + n
        try checkWorkspace(batch: batch, length: length, threads: pool.threads)
        try cache.allocate(config)
        let ids = try sequenceIds(text: text, image: image, batch: batch, imageCount: n, length: length)
        let hidden = run(ids: ids, count: length, cache: &cache, pool: pool)
        var last = [Float](repeating: 0, count: batch * config.dim)
        for b in 0..<batch {
            for d in 0..<config.dim { last[b * config.dim + d] = hidden[((b + 1) * length - 1) * config.dim + d] }
        }
        return imageLogits(hidden: last, batch: batch, pool: pool)
    }

    /// Appends one image token per sequence ([batch] ids) and returns the logits for the next
    /// image token, [batch, numImageTokens]. After `prefill` with n image tokens, the first
    /// step takes token n; steps are possible until the cache holds `seqLen` positions.
    public func step(imageTokens: [Int32], cache: inout TransformerCache, pool: ThreadPool) throws -> Tensor {
        let batch = cache.batch
        guard cache.length >= config.textLen else {
            throw DalleError.invalidArgument("step before prefill: the cache holds no text")
        }
        guard cache.length < config.seqLen else {
            throw DalleError.invalidArgument("the cache is full: all \(config.seqLen) positions were fed")
        }
        guard imageTokens.count == batch else {
            throw DalleError.invalidArgument("step got \(imageTokens.count) image tokens for a batch of \(batch)")
        }
        for t in imageTokens where t < 0 || Int(t) >= config.numImageTokens {
            throw DalleError.invalidArgument("image token \(t) is outside 0..<\(config.numImageTokens)")
        }
        let hidden = run(ids: imageTokens, count: 1, cache: &cache, pool: pool)
        return imageLogits(hidden: hidden, batch: batch, pool: pool)
    }

    // MARK: Input checks

    /// `outOfMemory` when the activations of `length` positions per sequence would be absurd,
    /// or when the system refuses the memory of `batch` sequences.
    private func checkWorkspace(batch: Int, length: Int, threads: Int) throws {
        let widest = max(2 * config.ffHidden, 3 * config.innerDim, config.dim)
        _ = try checkedCount([batch, length, widest], "the activations")
        try WorkingMemory.require(workingBytes(batch: batch), threads: threads, for: "the transformer on \(batch) sequences")
    }

    private func imageTokenCount(_ image: [Int32], batch: Int, limit: Int) throws -> Int {
        guard batch >= 1 else { throw DalleError.invalidArgument("batch must be at least 1, got \(batch)") }
        guard image.count % batch == 0, image.count / batch <= limit else {
            throw DalleError.invalidArgument("image holds \(image.count) tokens for a batch of \(batch); expected batch × n with n ≤ \(limit)")
        }
        for t in image where t < 0 || Int(t) >= config.numImageTokens {
            throw DalleError.invalidArgument("image token \(t) is outside 0..<\(config.numImageTokens)")
        }
        return image.count / batch
    }

    /// Ids per position [batch, length] in embedding space: <bos> 0, text ids with 0 replaced by
    /// the per-position pad id, then image ids.
    private func sequenceIds(text: [Int32], image: [Int32], batch: Int, imageCount n: Int, length: Int) throws -> [Int32] {
        let c = config
        guard text.count == batch * c.textSeqLen else {
            throw DalleError.invalidArgument("text holds \(text.count) ids; expected batch \(batch) × text_seq_len \(c.textSeqLen)")
        }
        for t in text where t < 0 || Int(t) >= c.textVocab {
            throw DalleError.invalidArgument("text id \(t) is outside 0..<\(c.textVocab)")
        }
        var ids = [Int32](repeating: 0, count: batch * length)
        for b in 0..<batch {
            for p in 1..<min(c.textLen, length) {
                let t = text[b * c.textSeqLen + p - 1]
                ids[b * length + p] = t == 0 ? Int32(c.numTextTokens + p - 1) : t
            }
            for i in 0..<max(0, length - c.textLen) { ids[b * length + c.textLen + i] = image[b * n + i] }
        }
        return ids
    }

    // MARK: Computation

    /// Feeds positions cache.length ..< cache.length + count for every sequence (`ids`
    /// [batch, count], validated) and returns the final hidden states [batch, count, dim].
    func run(ids: [Int32], count: Int, cache: inout TransformerCache, pool: ThreadPool) -> [Float] {
        let c = config, batch = cache.batch, start = cache.length
        let rows = batch * count, dim = c.dim
        var x = embed(ids: ids, batch: batch, start: start, count: count)
        var normed = [Float](repeating: 0, count: rows * dim)
        var block = [Float](repeating: 0, count: rows * dim)
        var qkv = [Float](repeating: 0, count: rows * 3 * c.innerDim)
        var attended = [Float](repeating: 0, count: rows * c.innerDim)
        var up = [Float](repeating: 0, count: rows * 2 * c.ffHidden)
        var gated = [Float](repeating: 0, count: rows * c.ffHidden)
        let keyLists = layers.reduce(into: [AttentionType: KeyLists]()) { lists, layer in
            if lists[layer.type] == nil { lists[layer.type] = KeyLists(c, type: layer.type, start: start, count: count) }
        }
        for (index, layer) in layers.enumerated() {
            // Attention block.
            layer.attentionNorm.apply(x, rows: rows, into: &normed, pool: pool)
            if c.shiftTokens { shift(&normed, history: &cache.attentionShift, layer: index, batch: batch, start: start, count: count) }
            let attention = attentions[layer.attention]
            attention.qkv.apply(normed, rows: rows, into: &qkv, pool: pool)
            attend(qkv: &qkv, into: &attended, layer: index, lists: keyLists[layer.type].unsafelyUnwrapped,
                   cache: &cache, start: start, count: count, pool: pool)
            attention.out.apply(attended, rows: rows, into: &block, pool: pool)
            addResidual(&x, &block, rows: rows, normOut: layer.attentionNormOut, scale: layer.attentionScale, pool: pool)
            // Feed-forward block.
            layer.feedForwardNorm.apply(x, rows: rows, into: &normed, pool: pool)
            if c.shiftTokens { shift(&normed, history: &cache.feedForwardShift, layer: index, batch: batch, start: start, count: count) }
            let feedForward = feedForwards[layer.feedForward]
            feedForward.up.apply(normed, rows: rows, into: &up, pool: pool)
            geglu(up, rows: rows, hidden: c.ffHidden, into: &gated, pool: pool)
            feedForward.down.apply(gated, rows: rows, into: &block, pool: pool)
            addResidual(&x, &block, rows: rows, normOut: layer.feedForwardNormOut, scale: layer.feedForwardScale, pool: pool)
        }
        cache.length = start + count
        return x
    }

    /// Token embeddings plus learned positions (without rotary), [batch, count, dim].
    private func embed(ids: [Int32], batch: Int, start: Int, count: Int) -> [Float] {
        let c = config, dim = c.dim
        var x = [Float](repeating: 0, count: batch * count * dim)
        x.withUnsafeMutableBufferPointer { xb in
            let base = xb.baseAddress.unsafelyUnwrapped
            for b in 0..<batch {
                for t in 0..<count {
                    let p = start + t, id = Int(ids[b * count + t]), row = base + (b * count + t) * dim
                    if p < c.textLen {
                        textEmbedding.copyRow(id, into: row)
                        textPositions?.addRow(p, into: row)
                    } else {
                        let i = p - c.textLen
                        imageEmbedding.copyRow(id, into: row)
                        if let rows = imageRowPositions, let columns = imageColumnPositions {
                            // One sum of the two positions, then added: the reference's order.
                            for d in 0..<dim {
                                row[d] += rows.table.element((i / c.imageFmapSize) * dim + d)
                                    + columns.table.element((i % c.imageFmapSize) * dim + d)
                            }
                        }
                    }
                }
            }
        }
        return x
    }

    /// PreShiftToken on normalised block inputs [batch, count, dim]: records each row's first
    /// half in `history`, then text rows take the first half of the previous position and image
    /// rows the first quarter of the token above and the second quarter of the token to the
    /// left (zeros at the edges).
    private func shift(_ h: inout [Float], history: inout [Float], layer: Int, batch: Int, start: Int, count: Int) {
        let c = config, dim = c.dim, half = dim / 2, quarter = dim / 4, f = c.imageFmapSize
        for b in 0..<batch {
            let base = (layer * batch + b) * c.seqLen * half
            for t in 0..<count {
                let p = start + t
                for d in 0..<half { history[base + p * half + d] = h[(b * count + t) * dim + d] }
            }
            for t in 0..<count {
                let p = start + t, row = (b * count + t) * dim
                if p < c.textLen {
                    for d in 0..<half { h[row + d] = p == 0 ? 0 : history[base + (p - 1) * half + d] }
                } else {
                    let i = p - c.textLen
                    for d in 0..<quarter { h[row + d] = i / f == 0 ? 0 : history[base + (p - f) * half + d] }
                    for d in quarter..<half { h[row + d] = i % f == 0 ? 0 : history[base + (p - 1) * half + d] }
                }
            }
        }
    }

    /// Rotates q, k, v (rotary), scales q, stores k and v in the cache and computes the masked
    /// attention of every new position, [batch, count, inner].
    private func attend(qkv: inout [Float], into out: inout [Float], layer: Int, lists: KeyLists,
                        cache: inout TransformerCache, start: Int, count: Int, pool: ThreadPool) {
        let c = config, batch = cache.batch, heads = c.heads, dh = c.dimHead, inner = c.innerDim
        let scale = Float(1 / Double(dh).squareRoot()), seqLen = c.seqLen, rot = c.rotaryDims
        qkv.withUnsafeMutableBufferPointer { qkvBuffer in
        cache.keys.withUnsafeMutableBufferPointer { keyBuffer in
        cache.values.withUnsafeMutableBufferPointer { valueBuffer in
        rotaryCos.withUnsafeBufferPointer { cosBuffer in
        rotarySin.withUnsafeBufferPointer { sinBuffer in
            let q = qkvBuffer.baseAddress.unsafelyUnwrapped
            let keys = keyBuffer.baseAddress.unsafelyUnwrapped, values = valueBuffer.baseAddress.unsafelyUnwrapped
            pool.parallelFor(batch * count) { range in
                for r in range {
                    let b = r / count, p = start + r % count
                    for h in 0..<heads {
                        let row = q + r * 3 * inner + h * dh
                        if rot > 0, let cs = cosBuffer.baseAddress, let sn = sinBuffer.baseAddress {
                            for part in 0..<3 { applyRotary(row + part * inner, cos: cs + p * rot, sin: sn + p * rot, dims: rot) }
                        }
                        for d in 0..<dh { row[d] *= scale }
                        let slot = (((layer * batch + b) * heads + h) * seqLen + p) * dh
                        for d in 0..<dh { keys[slot + d] = row[inner + d]; values[slot + d] = row[2 * inner + d] }
                    }
                }
            }
            out.withUnsafeMutableBufferPointer { outBuffer in
            lists.positions.withUnsafeBufferPointer { positionBuffer in
                let o = outBuffer.baseAddress.unsafelyUnwrapped, positions = positionBuffer.baseAddress.unsafelyUnwrapped
                pool.parallelFor(batch * heads * count) { range in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: lists.longest)
                    defer { scores.deallocate() }
                    for item in range {
                        let t = item % count, h = (item / count) % heads, b = item / (count * heads)
                        let r = b * count + t
                        let slot = ((layer * batch + b) * heads + h) * seqLen * dh
                        let visible = positions + lists.offsets[t]
                        // q was scaled above (× 1 below is exact).
                        attendOne(query: q + r * 3 * inner + h * dh, keys: keys + slot, values: values + slot,
                                  count: lists.offsets[t + 1] - lists.offsets[t], width: dh, scale: 1, scores: scores,
                                  into: o + r * inner + h * dh) { Int(visible[$0]) * dh }
                    }
                }
            }
            }
        }
        }
        }
        }
        }
    }

    /// x += scale ⊙ normOut(block), rows of width dim.
    private func addResidual(_ x: inout [Float], _ block: inout [Float], rows: Int, normOut: LayerNorm?,
                             scale: [Float], pool: ThreadPool) {
        if let normOut { normOut.applyInPlace(&block, rows: rows, pool: pool) }
        let dim = config.dim
        for r in 0..<rows { for d in 0..<dim { x[r * dim + d] += block[r * dim + d] * scale[d] } }
    }

    /// `to_logits` on hidden rows: DivideMax when stable, LayerNorm, then the text and image columns.
    private func finalLogits(hidden: [Float], rows: Int, text: inout [Float], image: inout [Float], pool: ThreadPool) {
        let normed = outputHidden(hidden, rows: rows, pool: pool)
        textLogits.apply(normed, rows: rows, into: &text, pool: pool)
        imageLogits.apply(normed, rows: rows, into: &image, pool: pool)
    }

    private func imageLogits(hidden: [Float], batch: Int, pool: ThreadPool) -> Tensor {
        let normed = outputHidden(hidden, rows: batch, pool: pool)
        var out = Tensor(zeros: [batch, config.numImageTokens])
        imageLogits.apply(normed, rows: batch, into: &out.scalars, pool: pool)
        return out
    }

    private func outputHidden(_ hidden: [Float], rows: Int, pool: ThreadPool) -> [Float] {
        var h = hidden
        let dim = config.dim
        if config.stable {
            for r in 0..<rows {
                var m = -Float.infinity
                for d in 0..<dim { m = max(m, h[r * dim + d]) }
                for d in 0..<dim { h[r * dim + d] /= m }
            }
        }
        outputNorm.applyInPlace(&h, rows: rows, pool: pool)
        return h
    }
}

/// For each new position, the positions it attends to under one attention type (ascending).
struct KeyLists {
    /// positions[offsets[t] ..< offsets[t + 1]] for query position start + t.
    var positions: [Int32] = []
    var offsets: [Int] = [0]
    var longest = 1

    init(_ c: TransformerConfig, type: AttentionType, start: Int, count: Int) {
        let f = c.imageFmapSize, textLen = c.textLen
        for p in start..<(start + count) {
            if p < textLen || type == .full {
                positions.append(contentsOf: (0...p).map { Int32($0) })
            } else {
                positions.append(contentsOf: (0..<textLen).map { Int32($0) })
                let i = p - textLen, r = i / f, col = i % f
                func image(_ rr: Int, _ cc: Int) { positions.append(Int32(textLen + rr * f + cc)) }
                switch type {
                case .full: break
                case .axialRow: for cc in 0...col { image(r, cc) }
                case .axialCol: for rr in 0...r { image(rr, col) }
                case .convLike:
                    for rr in max(0, r - 4)...r { for cc in max(0, col - 4)...col { image(rr, cc) } }
                }
            }
            longest = max(longest, positions.count - offsets[offsets.count - 1])
            offsets.append(positions.count)
        }
    }
}

extension ComponentKind {
    /// DALLE-pytorch's transformer; its image tokens must be those of the file's dvae, if any.
    public static let transformer = ComponentKind(name: "transformer", component: .transformer, capabilities: [.generate, .train]) {
        metadata, weights, loaded in
        let config = try TransformerConfig(metadata: metadata)
        if let image = loaded.model("dvae", as: ImageTokenizer.self),
           image.vocabSize != config.numImageTokens || image.gridSize != config.imageFmapSize {
            throw DalleError.badFile("the transformer expects \(config.numImageTokens) image tokens on a \(config.imageFmapSize)×\(config.imageFmapSize) grid; the dvae has \(image.vocabSize) on \(image.gridSize)×\(image.gridSize)")
        }
        return LoadedComponent.Parts(model: try DalleTransformer(config: config, weights: weights),
                               variant: "dalle-pytorch", parameterCount: countParameters(weights, prefix: "transformer."))
    }
}
