/// Reports `step` of `total` (step 0 before the first step, then after each step);
/// returning false stops the work with `DalleError.cancelled`.
public typealias ProgressHandler = (_ step: Int, _ total: Int) -> Bool

/// Drives the step loop of a long call: reports progress, honours a cancellation flag,
/// and throws `.cancelled` as soon as either asks to stop.
struct StepReporter {
    let total: Int
    let handler: ProgressHandler?
    let cancellation: CancellationFlag?

    /// Reports that `step` steps are done; throws when the caller asked to stop.
    func report(_ step: Int) throws {
        if let cancellation, cancellation.isRequested { throw DalleError.cancelled }
        if let handler, !handler(step, total) { throw DalleError.cancelled }
    }
}
