/// Reading CLIP checkpoints that are not libdalle bundles: safetensors files in OpenAI's
/// state-dict layout ("visual.conv1.weight", ...) or in Hugging Face's `CLIPModel` layout
/// ("vision_model.embeddings.patch_embedding.weight", ...). The renaming is data (the
/// same rules as tools/clip_reference.py); the configuration is inferred from the shapes
/// as `clip.model.build_model` does, with heads = width / 64 unless the file's metadata
/// gives "clip.vision_heads" / "clip.transformer_heads".
public enum CLIPCheckpoint {
    /// Hugging Face name fragments → OpenAI ones, applied in order to the first occurrence.
    /// A target ending in "#i" is part i of three (q, k, v) concatenated along dimension 0.
    static let huggingFaceRenames: [(from: String, to: String)] = [
        ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
        ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
        ("text_model.final_layer_norm.", "ln_final."),
        ("text_model.encoder.layers.", "transformer.resblocks."),
        ("text_projection.weight", "text_projection"),
        ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
        ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
        ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
        ("vision_model.pre_layrnorm.", "visual.ln_pre."),
        ("vision_model.post_layernorm.", "visual.ln_post."),
        ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
        ("visual_projection.weight", "visual.proj"),
        (".self_attn.out_proj.", ".attn.out_proj."),
        (".self_attn.q_proj.weight", ".attn.in_proj_weight#0"),
        (".self_attn.k_proj.weight", ".attn.in_proj_weight#1"),
        (".self_attn.v_proj.weight", ".attn.in_proj_weight#2"),
        (".self_attn.q_proj.bias", ".attn.in_proj_bias#0"),
        (".self_attn.k_proj.bias", ".attn.in_proj_bias#1"),
        (".self_attn.v_proj.bias", ".attn.in_proj_bias#2"),
        (".layer_norm1.", ".ln_1."),
        (".layer_norm2.", ".ln_2."),
        (".mlp.fc1.", ".mlp.c_fc."),
        (".mlp.fc2.", ".mlp.c_proj."),
    ]
    /// OpenAI parameters that Hugging Face stores as Linear weights ([out, in]).
    static let transposed: Set<String> = ["text_projection", "visual.proj"]
    /// Hugging Face buffers that are not parameters.
    static let ignoredSuffixes = ["position_ids"]
    /// Entries of OpenAI's TorchScript state dicts that are not parameters.
    static let ignoredNames: Set<String> = ["input_resolution", "context_length", "vocab_size"]

    /// `file` as a bundle: itself when it is a libdalle file, else (when its tensors are a
    /// CLIP checkpoint in either layout) a CLIP-only bundle with inferred metadata.
    public static func asBundle(_ file: SafetensorsFile) throws -> (metadata: [String: String], weights: WeightStore) {
        guard file.metadata["format"] != DalleModel.formatName else { return (file.metadata, file) }
        let names = file.names
        let isHF = names.contains { $0.hasPrefix("vision_model.") || $0.hasPrefix("text_model.") }
        let isOpenAI = names.contains("visual.conv1.weight")
        guard isHF || isOpenAI else { return (file.metadata, file) }
        let weights = RemappedWeights(file, rules: isHF ? huggingFaceRenames : [], transposed: isHF ? transposed : [], prefix: "clip.") {
            !ignoredNames.contains($0) && !ignoredSuffixes.contains(where: $0.hasSuffix)
        }
        var metadata = try inferredMetadata(weights, hints: file.metadata)
        metadata["format"] = DalleModel.formatName
        metadata["format_version"] = String(DalleModel.formatVersion)
        metadata["components"] = "clip"
        return (metadata, weights)
    }

    /// The clip.* metadata `build_model` would infer from the (OpenAI-named) shapes.
    static func inferredMetadata(_ w: RemappedWeights, hints: [String: String]) throws -> [String: String] {
        func shape(_ name: String) throws -> [Int] {
            guard let s = w.shape("clip." + name) else {
                throw DalleError.badFile("CLIP checkpoint lacks '\(name)' (ModifiedResNet vision towers are not supported)")
            }
            return s
        }
        let conv = try shape("visual.conv1.weight"), positions = try shape("visual.positional_embedding")
        let projection = try shape("text_projection"), textPositions = try shape("positional_embedding")
        let tokens = try shape("token_embedding.weight"), lnFinal = try shape("ln_final.weight")
        guard conv.count == 4, positions.count == 2, projection.count == 2, textPositions.count == 2,
              tokens.count == 2, lnFinal.count == 1 else {
            throw DalleError.badFile("CLIP checkpoint tensors have unexpected ranks")
        }
        guard conv.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), positions[0] <= 1 << 24 else {
            throw DalleError.badFile("CLIP checkpoint vision shapes out of range: conv1 \(conv), positional embedding \(positions)")
        }
        var grid = 0
        while (grid + 1) * (grid + 1) + 1 <= positions[0] { grid += 1 }
        func layers(_ prefix: String) -> Int {
            var n = 0
            while w.shape("clip.\(prefix)\(n).attn.in_proj_weight") != nil { n += 1 }
            return n
        }
        let c = CLIPConfig(
            embedDim: projection[1], imageResolution: conv[3] * grid, visionPatchSize: conv[3],
            visionWidth: conv[0], visionLayers: layers("visual.transformer.resblocks."),
            visionHeads: hints["clip.vision_heads"].flatMap { Int($0) } ?? max(conv[0] / 64, 1),
            contextLength: textPositions[0], vocabSize: tokens[0], textWidth: lnFinal[0],
            textLayers: layers("transformer.resblocks."),
            textHeads: hints["clip.transformer_heads"].flatMap { Int($0) } ?? max(lnFinal[0] / 64, 1))
        return c.metadata
    }
}
