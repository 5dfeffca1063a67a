import CDalle
import CDlfcn
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// The object behind a `dalle_model *`.
final class ModelBox {
    let model: DalleModel
    init(_ model: DalleModel) { self.model = model }
}

/// A Swift progress handler that calls a C progress callback for `phase`.
func progressHandler(_ callback: dalle_progress_callback?, _ userData: UnsafeMutableRawPointer?, phase: Int32) -> ProgressHandler? {
    guard let callback else { return nil }
    return { step, total in callback(dalle_phase(phase), Int32(clamping: step), Int32(clamping: total), userData) }
}

@_cdecl("dalle_model_default_params")
public func dalle_model_default_params() -> dalle_model_params {
    var params = dalle_model_params()
    params.struct_size = UInt32(MemoryLayout<dalle_model_params>.size)
    return params
}

/// Loads a model file from `path`.
@_cdecl("dalle_model_load_file")
public func dalle_model_load_file(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<dalle_model_params>?,
                                  _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> dalle_status {
    boundary("dalle_model_load_file") {
        guard let outModel else { throw DalleError.invalidArgument("out_model is NULL") }
        outModel.pointee = nil
        guard let path else { throw DalleError.invalidArgument("path is NULL") }
        let p = try readModelParams(params)
        let model = try DalleModel(path: String(cString: path), progress: progressHandler(p.progress, p.progress_user_data, phase: Int32(DALLE_PHASE_LOAD)))
        outModel.pointee = publish(model)
    }
}

/// Loads a model file from memory; the buffer is only read during the call.
@_cdecl("dalle_model_load_buffer")
public func dalle_model_load_buffer(_ data: UnsafeRawPointer?, _ size: Int, _ params: UnsafePointer<dalle_model_params>?,
                                    _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> dalle_status {
    boundary("dalle_model_load_buffer") {
        guard let outModel else { throw DalleError.invalidArgument("out_model is NULL") }
        outModel.pointee = nil
        guard let data else { throw DalleError.invalidArgument("data is NULL") }
        guard size > 0 else { throw DalleError.invalidArgument("size is \(size); a model buffer is never empty") }
        let p = try readModelParams(params)
        let model = try DalleModel(bytes: UnsafeRawBufferPointer(start: data, count: size),
                                   progress: progressHandler(p.progress, p.progress_user_data, phase: Int32(DALLE_PHASE_LOAD)))
        outModel.pointee = publish(model)
    }
}

/// Loads the default model: `$DALLE_MODEL`, else the first readable of `defaultModelCandidates()`.
@_cdecl("dalle_model_load_default")
public func dalle_model_load_default(_ params: UnsafePointer<dalle_model_params>?,
                                     _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> dalle_status {
    boundary("dalle_model_load_default") {
        guard let outModel else { throw DalleError.invalidArgument("out_model is NULL") }
        outModel.pointee = nil
        let p = try readModelParams(params)
        let model = try DalleModel(path: try defaultModelPath(),
                                   progress: progressHandler(p.progress, p.progress_user_data, phase: Int32(DALLE_PHASE_LOAD)))
        outModel.pointee = publish(model)
    }
}

/// The default model's file name, as the CLI's.
private let defaultModelName = "shapes-world.safetensors"

/// `$DALLE_MODEL` when set (an I/O error when it cannot be read), else the first readable
/// candidate; an I/O error naming every place looked at when there is none.
private func defaultModelPath() throws -> String {
    if let path = getenv("DALLE_MODEL").map({ String(cString: $0) }), !path.isEmpty {
        guard access(path, R_OK) == 0 else {
            throw DalleError.io("DALLE_MODEL is \(path), which cannot be read: \(String(cString: strerror(errno)))")
        }
        return path
    }
    let candidates = defaultModelCandidates()
    if let found = candidates.first(where: { access($0, R_OK) == 0 }) { return found }
    throw DalleError.io("no default model found; looked at $DALLE_MODEL (unset), "
        + (candidates.isEmpty ? "(the library's location is unknown)" : candidates.joined(separator: ", "))
        + ". Set DALLE_MODEL, or install the model (make install)")
}

/// Where the default model is looked for after `$DALLE_MODEL`, from the directory holding this
/// library (dladdr): PREFIX/lib -> PREFIX/share/dalle/models/, that directory itself, and the
/// checkout's models/ (build/lib -> ../../models/).
func defaultModelCandidates() -> [String] {
    var info = Dl_info()
    let anchor: @convention(c) () -> UnsafePointer<CChar> = dalle_version
    guard dladdr(unsafeBitCast(anchor, to: UnsafeRawPointer.self), &info) != 0, let file = info.dli_fname,
          let resolved = realpath(file, nil) else { return [] }
    defer { free(resolved) }
    let libraryDirectory = parentDirectory(String(cString: resolved))
    let prefix = parentDirectory(libraryDirectory)
    return [prefix + "/share/dalle/models/" + defaultModelName,
            libraryDirectory + "/" + defaultModelName,
            parentDirectory(prefix) + "/models/" + defaultModelName]
}

/// `path` without its last component ("/" stays "/").
private func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

private func readModelParams(_ params: UnsafePointer<dalle_model_params>?) throws -> dalle_model_params {
    try readParams(params, defaults: dalle_model_default_params(), name: "dalle_model_params",
                   minimumSize: MemoryLayout<dalle_model_params>.size)
}

private func publish(_ model: DalleModel) -> OpaquePointer {
    for name in model.skippedComponents {
        Log.write(dalle_log_level(DALLE_LOG_WARN), "model component '\(name)' is not supported by libdalle \(libraryVersion); skipped")
    }
    Log.write(dalle_log_level(DALLE_LOG_INFO), "loaded model: components \(model.components), \(model.parameterCount) parameters")
    return Handles.make(ModelBox(model), .model)
}

@_cdecl("dalle_model_free")
public func dalle_model_free(_ model: OpaquePointer?) {
    guard let model else { return }
    do { try Handles.release(model, .model, as: ModelBox.self) } catch { reportMisuse("dalle_model_free", error) }
}

/// Fills the first `out_info->struct_size` bytes of `*out_info`.
@_cdecl("dalle_model_get_info")
public func dalle_model_get_info(_ model: OpaquePointer?, _ outInfo: UnsafeMutablePointer<dalle_model_info>?) -> dalle_status {
    boundary("dalle_model_get_info") {
        guard let outInfo else { throw DalleError.invalidArgument("out_info is NULL") }
        let size = Int(UnsafeRawPointer(outInfo).load(as: UInt32.self))
        let minimum = MemoryLayout<UInt32>.size * 6
        guard size >= minimum else {
            throw DalleError.invalidArgument("out_info->struct_size is \(size); set it to sizeof(dalle_model_info) (\(MemoryLayout<dalle_model_info>.size))")
        }
        let m = try Handles.resolve(model, .model, as: ModelBox.self, name: "model").model
        var info = dalle_model_info()
        info.struct_size = UInt32(min(size, MemoryLayout<dalle_model_info>.size))
        info.components = m.components.rawValue
        if let imageTokenizer = m.imageTokenizer {
            info.image_size = UInt32(clamping: imageTokenizer.imageSize)
            info.image_channels = 3
            info.token_grid_size = UInt32(clamping: imageTokenizer.gridSize)
            info.codebook_size = UInt32(clamping: imageTokenizer.vocabSize)
        }
        info.n_params = UInt64(clamping: m.parameterCount)
        info.cond_scale = m.condScale
        info.likelihood_weight = m.likelihoodWeight
        let byteCount = Int(info.struct_size)
        withUnsafeBytes(of: &info) { bytes in
            UnsafeMutableRawPointer(outInfo).copyMemory(from: bytes.baseAddress!, byteCount: byteCount)
        }
    }
}

@_cdecl("dalle_model_component_count")
public func dalle_model_component_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int32>?) -> dalle_status {
    boundary("dalle_model_component_count") {
        guard let outCount else { throw DalleError.invalidArgument("out_count is NULL") }
        let m = try Handles.resolve(model, .model, as: ModelBox.self, name: "model").model
        outCount.pointee = Int32(clamping: m.loaded.count)
    }
}

/// Fills the first `out_info->struct_size` bytes of `*out_info`.
@_cdecl("dalle_model_get_component")
public func dalle_model_get_component(_ model: OpaquePointer?, _ index: Int32,
                                      _ outInfo: UnsafeMutablePointer<dalle_component_info>?) -> dalle_status {
    boundary("dalle_model_get_component") {
        guard let outInfo else { throw DalleError.invalidArgument("out_info is NULL") }
        let size = Int(UnsafeRawPointer(outInfo).load(as: UInt32.self))
        let minimum = MemoryLayout<dalle_component_info>.offset(of: \.n_params) ?? 0
        guard size >= minimum else {
            throw DalleError.invalidArgument("out_info->struct_size is \(size); set it to sizeof(dalle_component_info) (\(MemoryLayout<dalle_component_info>.size))")
        }
        let m = try Handles.resolve(model, .model, as: ModelBox.self, name: "model").model
        guard index >= 0, Int(index) < m.loaded.count else {
            throw DalleError.invalidArgument("index is \(index); this model has \(m.loaded.count) components (0 ..< \(m.loaded.count))")
        }
        let component = m.loaded[Int(index)]
        var info = dalle_component_info()
        info.struct_size = UInt32(min(size, MemoryLayout<dalle_component_info>.size))
        info.component = component.kind.component.rawValue
        info.capabilities = component.kind.capabilities.rawValue
        info.n_params = UInt64(clamping: component.parameterCount)
        withUnsafeMutableBytes(of: &info.name) { copyTerminated(component.kind.name, into: $0) }
        withUnsafeMutableBytes(of: &info.variant) { copyTerminated(component.variant, into: $0) }
        let byteCount = Int(info.struct_size)
        withUnsafeBytes(of: &info) { bytes in
            UnsafeMutableRawPointer(outInfo).copyMemory(from: bytes.baseAddress!, byteCount: byteCount)
        }
    }
}

/// `text`'s UTF-8 bytes into `buffer`, cut to leave room for the terminating NUL (which the
/// zeroed buffer already holds).
private func copyTerminated(_ text: String, into buffer: UnsafeMutableRawBufferPointer) {
    for (i, byte) in text.utf8.prefix(buffer.count - 1).enumerated() { buffer[i] = byte }
}
