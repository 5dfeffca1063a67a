/// A residual block of plain convolutions, the res-block of both discrete VAEs:
/// y = shortcut(x) + gain · conv_n(relu(… relu(conv_1(x′)))), with x′ = relu(x) when `reluFirst`,
/// a ReLU before every later convolution, and `shortcut` a 1×1 convolution or the identity.
/// OpenAI's dVAE (`EncoderBlock` / `DecoderBlock`): four convolutions, all ReLU-preceded, gain
/// 1/L² for L res-blocks; DALLE-pytorch's `ResBlock`: conv 3×3 → ReLU → conv 3×3 → ReLU → conv 1×1, gain 1.
/// (diffusers' GroupNorm/SiLU block with a time embedding is `ResnetBlock2D`.)
struct ConvResBlock: Sendable {
    let shortcut: Conv2d?
    /// The res path, at least one convolution; the last is fused with the scaled residual sum.
    let convs: [Conv2d]
    let reluFirst: Bool
    let gain: Float

    init(convs: [Conv2d], shortcut: Conv2d? = nil, reluFirst: Bool, gain: Float = 1) {
        self.convs = convs
        self.shortcut = shortcut
        self.reluFirst = reluFirst
        self.gain = gain
    }

    func callAsFunction(_ x: Tensor, pool: ThreadPool) -> Tensor {
        let identity = shortcut.map { conv2d(x, $0, pool: pool) } ?? x
        var h = x
        for (i, conv) in convs.enumerated() {
            let last = i == convs.count - 1
            h = conv2d(h, conv, reluInput: i > 0 || reluFirst, residual: last ? identity : nil, scale: last ? gain : 1, pool: pool)
        }
        return h
    }
}
