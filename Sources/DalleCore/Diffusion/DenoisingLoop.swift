/// Classifier-free guidance as diffusers' unCLIP pipeline applies it to a model output computed on the
/// doubled batch [unconditional B, conditional B, …]: u + scale·(c − u) per value (in that order of
/// Float operations). With `guidedChannels` (the decoder: its 3 noise channels of 6) only the first
/// channels along dimension 1 are guided; the rest (the learned variance) are the conditional half's.
///
/// Returns [B, …]. Throws `invalidArgument` for an odd or empty batch, a rank below 2, a
/// `guidedChannels` outside 1…channels, or a scale that is not a positive finite number.
public func classifierFreeGuidance(_ output: Tensor, scale: Float, guidedChannels: Int? = nil) throws -> Tensor {
    guard output.rank >= 2, output.shape[0] >= 2, output.shape[0] % 2 == 0, output.count > 0 else {
        throw DalleError.invalidArgument("guidance wants an output of shape [2·batch, channels, ...], not \(output.shape)")
    }
    guard scale.isFinite, scale > 0 else { throw DalleError.invalidArgument("guidance scale \(scale) (want a number > 0)") }
    let channels = output.shape[1]
    let guided = guidedChannels ?? channels
    guard guided >= 1, guided <= channels else {
        throw DalleError.invalidArgument("guidance of \(guided) channels of \(channels)")
    }
    let batch = output.shape[0] / 2, item = output.count / output.shape[0], cut = item / channels * guided
    var out = [Float](repeating: 0, count: batch * item)
    output.scalars.withUnsafeBufferPointer { x in
        for b in 0..<batch {
            let u = b * item, c = (batch + b) * item, o = b * item
            for j in 0..<cut { out[o + j] = x[u + j] + scale * (x[c + j] - x[u + j]) }
            for j in cut..<item { out[o + j] = x[c + j] }
        }
    }
    var shape = output.shape
    shape[0] = batch
    return Tensor(uncheckedShape: shape, scalars: out)
}

extension UnCLIPScheduler {
    /// One stage's denoising loop as diffusers' unCLIP pipeline runs it: for each of `steps` timesteps
    /// t (noisiest first) the model's output for (sample, t, step index) goes to `step`, with the next
    /// timestep as `previousTimestep` and `noise(step index)` where the step adds noise (every step but
    /// the last). The last step goes to −1: the same as diffusers' `prev_timestep=None` there (t = 0,
    /// t − 1 = −1) for 2 steps or more, and x₀ itself for a single step from t = T − 1 (where diffusers'
    /// `set_timesteps(1)` divides by zero). `progress(step, steps)` is called after each step;
    /// returning false stops the loop with `DalleError.cancelled`.
    ///
    /// Throws what `timesteps(count:)`, `model`, `noise` and `step` throw, and `invalidArgument` when
    /// a noisy step gets no noise.
    public func denoise(_ initial: Tensor, steps: Int, noise: (Int) throws -> Tensor?,
                        model: (Tensor, Int, Int) throws -> Tensor,
                        progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let timesteps = try self.timesteps(count: steps)
        var sample = initial
        for (i, t) in timesteps.enumerated() {
            let previous = i + 1 < timesteps.count ? timesteps[i + 1] : -1
            let output = try model(sample, t, i)
            let stepNoise = Self.addsNoise(timestep: t, previousTimestep: previous) ? try noise(i) : nil
            sample = try step(modelOutput: output, timestep: t, sample: sample, previousTimestep: previous,
                              noise: stepNoise).previousSample
            if let progress, !progress(i + 1, timesteps.count) { throw DalleError.cancelled }
        }
        return sample
    }
}
