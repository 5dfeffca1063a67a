/// Reverse-mode automatic differentiation over the library's kernels.
///
/// A `Tape` records every operation of one forward pass as a `Variable` with a closure that
/// turns the output's gradient into gradients of its inputs. `backward(from:)` runs the
/// closures in reverse order. Parameters are variables that live across steps (`Variable
/// .parameter`); their gradients accumulate until the optimizer clears them. Every kernel
/// splits outputs over threads and sums in a fixed order, so gradients do not depend on the
/// thread count.

/// A tensor value in a computation, with its gradient once `backward` has reached it.
public final class Variable {
    /// Row-major values.
    public internal(set) var value: [Float]
    public let shape: [Int]
    /// d(loss)/d(value); empty until a gradient arrives.
    public internal(set) var grad: [Float] = []
    /// False for constants (inputs, targets) and frozen parameters: no gradient is kept for
    /// them, and operations whose inputs all need none are not differentiated.
    public internal(set) var requiresGrad: Bool
    /// Turns `grad` into gradients of the inputs; nil for leaves.
    var backward: ((Variable) -> Void)?

    init(_ value: [Float], shape: [Int], requiresGrad: Bool, backward: ((Variable) -> Void)? = nil) {
        self.value = value
        self.shape = shape
        self.requiresGrad = requiresGrad
        self.backward = backward
    }

    /// A trainable leaf (its gradient accumulates across `backward` calls).
    public static func parameter(_ value: [Float], shape: [Int]) -> Variable {
        Variable(value, shape: shape, requiresGrad: true)
    }

    /// A leaf that needs no gradient.
    public static func constant(_ value: [Float], shape: [Int]) -> Variable {
        Variable(value, shape: shape, requiresGrad: false)
    }

    public var count: Int { value.count }

    /// Calls `body` with the gradient buffer, created as zeros on first use.
    @inline(__always)
    func accumulateGrad(_ body: (UnsafeMutablePointer<Float>) -> Void) {
        guard requiresGrad else { return }
        if grad.isEmpty { grad = [Float](repeating: 0, count: value.count) }
        grad.withUnsafeMutableBufferPointer { body($0.baseAddress.unsafelyUnwrapped) }
    }

    /// Drops the gradient (the optimizer calls this after each step).
    public func zeroGrad() { grad = [] }

    /// Replaces the values (loading a checkpoint, or the optimizer's update).
    func setValue(_ newValue: [Float]) { value = newValue }
}

/// The record of one forward pass.
public final class Tape {
    public let pool: ThreadPool
    private var nodes: [Variable] = []

    public init(pool: ThreadPool) { self.pool = pool }

    /// A new operation result. `backward` is kept only when an input needs a gradient.
    func record(_ value: [Float], shape: [Int], inputs: [Variable], backward: @escaping (Variable) -> Void) -> Variable {
        let needsGrad = inputs.contains { $0.requiresGrad }
        let v = Variable(value, shape: shape, requiresGrad: needsGrad, backward: needsGrad ? backward : nil)
        if needsGrad { nodes.append(v) }
        return v
    }

    /// Back-propagates from `loss` (seeded with d loss = 1, or with `gradient`, d L / d loss for
    /// an output that feeds a loss recorded elsewhere) through every recorded operation, then
    /// forgets them. Parameter gradients accumulate.
    public func backward(from loss: Variable, gradient: [Float]? = nil) {
        guard loss.requiresGrad else { nodes.removeAll(); return }
        loss.grad = gradient ?? [Float](repeating: 1, count: loss.count)
        for node in nodes.reversed() {
            if !node.grad.isEmpty { node.backward?(node) }
            node.backward = nil
            node.grad = []
        }
        nodes.removeAll()
    }
}

// MARK: Small shared helpers

/// `count` floats left unset, for a result that the operation then writes in full (saves
/// zeroing large buffers such as attention weights).
@inline(__always)
func uninitializedFloats(_ count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { _, n in n = count }
}

@inline(__always)
func withPointers<R>(_ a: [Float], _ body: (UnsafePointer<Float>) -> R) -> R {
    a.withUnsafeBufferPointer { body($0.baseAddress.unsafelyUnwrapped) }
}
