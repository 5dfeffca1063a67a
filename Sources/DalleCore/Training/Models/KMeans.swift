/// Lloyd's k-means with k-means++ seeding, deterministic for a seed and any thread count.
struct KMeans {
    /// [k × dim] row-major.
    var centroids: [Float]
    let k: Int, dim: Int

    /// Clusters `points` [count × dim] (row-major) into `k` centroids over `iterations` rounds
    /// of assignment and update. Seeds are drawn with probability ∝ the squared distance to the
    /// nearest seed so far (duplicates of a seed are never drawn again); a cluster left empty
    /// keeps its centroid.
    init(points: [Float], dim: Int, k: Int, iterations: Int, seed: UInt64, pool: ThreadPool) {
        self.k = k
        self.dim = dim
        let count = points.count / dim
        var rng = SplitMix64(seed: seed)
        var centroids = [Float](repeating: 0, count: k * dim)
        var nearest = [Double](repeating: .infinity, count: count)
        var chosen = Int(rng.next() % UInt64(max(count, 1)))
        for c in 0..<k {
            for i in 0..<dim { centroids[c * dim + i] = points[chosen * dim + i] }
            for p in 0..<count {
                var d: Double = 0
                for i in 0..<dim { let x = Double(points[p * dim + i] - points[chosen * dim + i]); d += x * x }
                nearest[p] = min(nearest[p], d)
            }
            let total = nearest.reduce(0, +)
            guard total > 0 else { chosen = Int(rng.next() % UInt64(max(count, 1))); continue }
            var r = rng.nextUnit() * total
            chosen = 0
            while chosen < count - 1 && r >= nearest[chosen] { r -= nearest[chosen]; chosen += 1 }
        }
        self.centroids = centroids
        for _ in 0..<iterations {
            let assignment = assign(points, pool: pool).cluster
            var sums = [Double](repeating: 0, count: k * dim), sizes = [Int](repeating: 0, count: k)
            for (p, c) in assignment.enumerated() {
                sizes[c] += 1
                for i in 0..<dim { sums[c * dim + i] += Double(points[p * dim + i]) }
            }
            for c in 0..<k where sizes[c] > 0 {
                for i in 0..<dim { self.centroids[c * dim + i] = Float(sums[c * dim + i] / Double(sizes[c])) }
            }
        }
    }

    /// Scores 2 c·x − |c|² of every point against every centroid [count × k] (the nearest
    /// centroid scores highest: the score is |x|² − |x − c|²).
    func scores(_ points: [Float], pool: ThreadPool) -> [Float] {
        let count = points.count / dim
        var transposed = [Float](repeating: 0, count: dim * k)
        for c in 0..<k { for i in 0..<dim { transposed[i * k + c] = 2 * centroids[c * dim + i] } }
        var out = [Float](repeating: 0, count: count * k)
        points.withUnsafeBufferPointer { a in transposed.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { c in
            gemm(m: count, n: k, k: dim, a: a.baseAddress!, lda: dim, b: b.baseAddress!, ldb: k, c: c.baseAddress!, ldc: k,
                 accumulate: false, pool: pool)
        } } }
        let norms = (0..<k).map { c in (0..<dim).reduce(Float(0)) { $0 + centroids[c * dim + $1] * centroids[c * dim + $1] } }
        for p in 0..<count { for c in 0..<k { out[p * k + c] -= norms[c] } }
        return out
    }

    /// Each point's nearest centroid and how much nearer it is than the second nearest, in score.
    func assign(_ points: [Float], pool: ThreadPool) -> (cluster: [Int], margin: [Float]) {
        let s = scores(points, pool: pool), count = points.count / dim
        var cluster = [Int](repeating: 0, count: count), margin = [Float](repeating: 0, count: count)
        for p in 0..<count {
            var best = 0, second = -Float.infinity
            for c in 1..<k {
                let v = s[p * k + c]
                if v > s[p * k + best] { second = s[p * k + best]; best = c } else if v > second { second = v }
            }
            cluster[p] = best
            margin[p] = s[p * k + best] - second
        }
        return (cluster, margin)
    }
}
