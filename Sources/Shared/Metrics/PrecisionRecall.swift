// Improved precision and recall (Kynkaanniemi et al. 2019, section 3): each set's manifold is
// the union of balls around its points, of radius the distance to the point's k-th nearest
// neighbour in the same set (itself excluded),
//   f(phi, Phi) = 1 if |phi - phi'| <= NN_k(phi', Phi) for some phi' in Phi, else 0   (eq. 1)
//   precision = mean over samples s of f(s, Reference),  recall = mean over reference r of f(r, Samples)
// Squared distances |a|^2 + |b|^2 - 2 a.b come from a DGEMM over blocks of rows (at most ~2^22
// distances at a time, 32 MB), so n = 10,000 against 10,000 never holds the 10^8 distances at once;
// the points are first centred on the reference mean, which keeps the cancellation in that formula
// small. Cost: O(n m d) for each of the three products (radii of both sets, then the cross distances).
import COpenBLAS
import Foundation

public enum PrecisionRecall {
    /// A set of points (rows) with the squared radii of their k-NN balls.
    public struct Manifold: Sendable {
        public let count: Int
        public let width: Int
        public let k: Int
        /// count x width, centred on the origin given at construction.
        let points: [Double]
        /// |p|^2 of every centred point.
        let norms: [Double]
        /// Squared distance of each point to its k-th nearest neighbour in the set (itself excluded).
        public let radiiSquared: [Double]

        /// `rows`: count x width; `origin`: subtracted from every point (the reference mean).
        /// Needs count > k >= 1.
        public init(rows: [Float], count n: Int, width d: Int, k: Int, origin: [Double], blockRows: Int? = nil) {
            precondition(rows.count == n * d && origin.count == d && k >= 1 && n > k, "PrecisionRecall: \(rows.count) values for \(n) x \(d), k = \(k)")
            count = n; width = d; self.k = k
            var p = [Double](repeating: 0, count: n * d)
            var nn = [Double](repeating: 0, count: n)
            for i in 0..<n {
                var s = 0.0
                for j in 0..<d { let v = Double(rows[i * d + j]) - origin[j]; p[i * d + j] = v; s += v * v }
                nn[i] = s
            }
            points = p; norms = nn
            var radii = [Double](repeating: 0, count: n)
            let me = PartialManifold(count: n, width: d, points: p, norms: nn)
            let block = blockRows ?? PrecisionRecall.defaultBlock(n)
            var buffer = [Double](repeating: 0, count: min(block, n) * n)
            var lo = 0
            while lo < n {
                let hi = min(n, lo + block)
                PrecisionRecall.squaredDistances(me, lo..<hi, me, into: &buffer)
                buffer.withUnsafeBufferPointer { dist in
                    radii.withUnsafeMutableBufferPointer { r in
                        PrecisionRecall.inPieces(hi - lo) { range in
                            var best = [Double](repeating: .infinity, count: k)   // ascending
                            for bi in range {
                                for c in 0..<k { best[c] = .infinity }
                                let i = lo + bi
                                let row = dist.baseAddress! + bi * n
                                for j in 0..<n where j != i {
                                    let v = row[j]
                                    if v < best[k - 1] {
                                        var c = k - 1
                                        while c > 0 && best[c - 1] > v { best[c] = best[c - 1]; c -= 1 }
                                        best[c] = v
                                    }
                                }
                                r[i] = best[k - 1]
                            }
                        }
                    }
                }
                lo = hi
            }
            radiiSquared = radii
        }

        var partial: PartialManifold { PartialManifold(count: count, width: width, points: points, norms: norms) }
    }

    /// (precision, recall) of `samples` against `reference` (same width, same origin).
    public static func compute(samples s: Manifold, reference r: Manifold, blockRows: Int? = nil) -> (precision: Double, recall: Double) {
        precondition(s.width == r.width, "PrecisionRecall: widths \(s.width) and \(r.width)")
        let n = s.count, m = r.count
        let block = blockRows ?? defaultBlock(m)
        var buffer = [Double](repeating: 0, count: min(block, n) * m)
        var inReference = [Bool](repeating: false, count: n)   // sample i inside some reference ball
        var covered = [Bool](repeating: false, count: m)       // reference j inside some sample ball
        let sp = s.partial, rp = r.partial
        var lo = 0
        while lo < n {
            let hi = min(n, lo + block)
            squaredDistances(sp, lo..<hi, rp, into: &buffer)
            buffer.withUnsafeBufferPointer { dist in
                inReference.withUnsafeMutableBufferPointer { inside in
                    inPieces(hi - lo) { range in
                        for bi in range {
                            let row = dist.baseAddress! + bi * m
                            var hit = false
                            for j in 0..<m where row[j] <= r.radiiSquared[j] { hit = true; break }
                            inside[lo + bi] = hit
                        }
                    }
                }
                covered.withUnsafeMutableBufferPointer { cov in
                    inPieces(m) { range in
                        for j in range where !cov[j] {
                            for bi in 0..<(hi - lo) where dist[bi * m + j] <= s.radiiSquared[lo + bi] { cov[j] = true; break }
                        }
                    }
                }
            }
            lo = hi
        }
        return (Double(inReference.filter { $0 }.count) / Double(n), Double(covered.filter { $0 }.count) / Double(m))
    }

    /// Rows per block: about 2^22 distances against `columns` points.
    static func defaultBlock(_ columns: Int) -> Int { max(1, (1 << 22) / max(columns, 1)) }

    struct PartialManifold {
        let count: Int, width: Int
        let points: [Double], norms: [Double]
    }

    /// buffer[(i - rows.lowerBound) * b.count + j] = |a_i - b_j|^2 (clamped at 0) for i in rows.
    static func squaredDistances(_ a: PartialManifold, _ rows: Range<Int>, _ b: PartialManifold, into buffer: inout [Double]) {
        let h = rows.count, m = b.count, d = a.width
        BLAS.setThreads(BLAS.maxThreads)
        a.points.withUnsafeBufferPointer { ap in
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(h), Int32(m), Int32(d), -2,
                        ap.baseAddress! + rows.lowerBound * d, Int32(d), b.points, Int32(d), 0, &buffer, Int32(m))
        }
        buffer.withUnsafeMutableBufferPointer { out in
            inPieces(h) { range in
                for bi in range {
                    let na = a.norms[rows.lowerBound + bi]
                    for j in 0..<m { out[bi * m + j] = max(0, out[bi * m + j] + na + b.norms[j]) }
                }
            }
        }
    }

    /// body over a split of 0..<n into contiguous pieces, run concurrently.
    static func inPieces(_ n: Int, _ body: (Range<Int>) -> Void) {
        let pieces = n >= 64 ? 2 * BLAS.maxThreads : 1
        parallelFor(pieces) { c in body(chunkRange(c, of: pieces, n: n)) }
    }
}
