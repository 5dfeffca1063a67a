/// C[m×n] = A[m×k] · B[k×n] (+ C when `accumulate`), all row-major with leading
/// dimensions lda, ldb, ldc. Work is split over rows/columns of C, never over k,
/// so the result is identical for every thread count.
public func gemm(m: Int, n: Int, k: Int,
                 a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 c: UnsafeMutablePointer<Float>, ldc: Int,
                 accumulate: Bool, pool: ThreadPool) {
    pool.parallelFor(m) { rows in
        for i in rows {
            for j in 0..<n {
                var s: Float = accumulate ? c[i * ldc + j] : 0
                for p in 0..<k { s += a[i * lda + p] * b[p * ldb + j] }
                c[i * ldc + j] = s
            }
        }
    }
}
