import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// The object behind a `dalle_context *`.
final class ContextBox {
    let session: DalleSession
    let progress: dalle_progress_callback?
    let progressUserData: UnsafeMutableRawPointer?
    /// Held for the duration of each call: a second thread gets an error, not a data race.
    let busy = Lock()
    /// The last call's error (malloc'd), or nil when it succeeded.
    var lastError: UnsafeMutablePointer<CChar>? = nil

    init(session: DalleSession, params: dalle_context_params) {
        self.session = session
        self.progress = params.progress
        self.progressUserData = params.progress_user_data
    }

    deinit { free(lastError) }

    func setLastError(_ message: String?) {
        free(lastError)
        lastError = message.flatMap(mallocCString)
    }

    func progressHandler(_ phase: Int32) -> ProgressHandler? {
        DalleCAPI.progressHandler(progress, progressUserData, phase: phase)
    }
}

/// Runs a call on the context `ctx`: resolves the handle, holds the context for the call,
/// and records the outcome as the context's last error.
func withContext(_ function: String, _ ctx: OpaquePointer?, _ body: (ContextBox) throws -> Void) -> dalle_status {
    var box: ContextBox? = nil
    return boundary(function, onError: { message in box?.setLastError(message) }) {
        let resolved = try Handles.resolve(ctx, .context, as: ContextBox.self, name: "ctx")
        let ran: Void? = try resolved.busy.withLockIfAvailable {
            box = resolved
            resolved.setLastError(nil)
            try body(resolved)
        }
        guard ran != nil else {
            throw DalleError.invalidArgument("the context is in use by another thread (a context serves one thread at a time)")
        }
    }
}

@_cdecl("dalle_context_default_params")
public func dalle_context_default_params() -> dalle_context_params {
    var params = dalle_context_params()
    params.struct_size = UInt32(MemoryLayout<dalle_context_params>.size)
    params.n_threads = 0
    params.seed = DALLE_SEED_RANDOM
    return params
}

/// Creates a context on `model`; the context keeps the model alive.
@_cdecl("dalle_context_create")
public func dalle_context_create(_ model: OpaquePointer?, _ params: UnsafePointer<dalle_context_params>?,
                                 _ outCtx: UnsafeMutablePointer<OpaquePointer?>?) -> dalle_status {
    boundary("dalle_context_create") {
        guard let outCtx else { throw DalleError.invalidArgument("out_ctx is NULL") }
        outCtx.pointee = nil
        let m = try Handles.resolve(model, .model, as: ModelBox.self, name: "model").model
        let p = try readParams(params, defaults: dalle_context_default_params(), name: "dalle_context_params",
                               minimumSize: MemoryLayout<dalle_context_params>.size)
        let session = try DalleSession(model: m, threads: Int(p.n_threads),
                                       seed: p.seed == DALLE_SEED_RANDOM ? nil : p.seed)
        outCtx.pointee = Handles.make(ContextBox(session: session, params: p), .context)
    }
}

@_cdecl("dalle_context_free")
public func dalle_context_free(_ ctx: OpaquePointer?) {
    guard let ctx else { return }
    do { try Handles.release(ctx, .context, as: ContextBox.self) } catch { reportMisuse("dalle_context_free", error) }
}

private let invalidContextMessage = staticCString("dalle_context_last_error: ctx is NULL or not a live dalle_context")

@_cdecl("dalle_context_last_error")
public func dalle_context_last_error(_ ctx: OpaquePointer?) -> UnsafePointer<CChar> {
    guard let box = try? Handles.resolve(ctx, .context, as: ContextBox.self, name: "ctx") else { return invalidContextMessage }
    return box.lastError.map { UnsafePointer($0) } ?? emptyCString
}

@_cdecl("dalle_context_seed")
public func dalle_context_seed(_ ctx: OpaquePointer?) -> UInt64 {
    do { return try Handles.resolve(ctx, .context, as: ContextBox.self, name: "ctx").session.seed }
    catch { reportMisuse("dalle_context_seed", error); return 0 }
}

@_cdecl("dalle_context_threads")
public func dalle_context_threads(_ ctx: OpaquePointer?) -> Int32 {
    do { return Int32(clamping: try Handles.resolve(ctx, .context, as: ContextBox.self, name: "ctx").session.pool.threads) }
    catch { reportMisuse("dalle_context_threads", error); return 0 }
}

/// Asks the call running on `ctx` to stop at its next step. Any thread.
@_cdecl("dalle_cancel")
public func dalle_cancel(_ ctx: OpaquePointer?) {
    do { try Handles.resolve(ctx, .context, as: ContextBox.self, name: "ctx").session.cancel() }
    catch { reportMisuse("dalle_cancel", error) }
}
