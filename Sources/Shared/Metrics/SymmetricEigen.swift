// Eigen-decomposition of a real symmetric matrix A = V diag(lambda) V^T by the cyclic Jacobi
// method (Golub & Van Loan, Matrix Computations, 4th ed., section 8.5, Algorithm 8.5.3), in Double:
//   for each pair p < q with a_pq != 0:
//     theta = (a_qq - a_pp) / (2 a_pq),  t = sign(theta) / (|theta| + sqrt(theta^2 + 1)),
//     c = 1 / sqrt(t^2 + 1),  s = t c                            (the rotation that zeroes a_pq)
//     A <- J^T A J,  V <- V J,  with J the rotation by (c, s) in the (p, q) plane
// until off(A) = sqrt(sum_{p != q} a_pq^2) <= 1e-15 ||A||_F. Sweeps converge quadratically; the
// eigenvalues carry an absolute error of order eps ||A|| (small ones are not lost to cancellation).
import Foundation

public struct SymmetricEigen {
    /// Eigenvalues, in ascending order.
    public let values: [Double]
    /// Eigenvectors as the columns of an n x n row-major matrix, in the order of `values`.
    public let vectors: [Double]
    public let n: Int

    /// `a`: n x n row-major and symmetric (only its symmetric part a + a^T / 2 is used).
    public init(_ a: [Double], n: Int) {
        precondition(a.count == n * n, "SymmetricEigen: \(a.count) values for \(n) x \(n)")
        self.n = n
        // The working copy, symmetrised; v holds V^T (row i = eigenvector i) so that both
        // updates of a rotation run along contiguous rows.
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { m[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]) } }
        var vt = [Double](repeating: 0, count: n * n)
        for i in 0..<n { vt[i * n + i] = 1 }
        var frob = 0.0
        for x in m { frob += x * x }
        let target = 1e-30 * frob   // off(A)^2 <= (1e-15 ||A||_F)^2
        m.withUnsafeMutableBufferPointer { mp in
            vt.withUnsafeMutableBufferPointer { vp in
                for _ in 0..<64 {
                    var off = 0.0
                    for p in 0..<n { for q in (p + 1)..<max(p + 1, n) { off += 2 * mp[p * n + q] * mp[p * n + q] } }
                    if off <= target || n < 2 { break }
                    for p in 0..<(n - 1) {
                        for q in (p + 1)..<n {
                            let apq = mp[p * n + q]
                            if apq == 0 { continue }
                            let app = mp[p * n + p], aqq = mp[q * n + q]
                            let theta = (aqq - app) / (2 * apq)
                            let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                            let c = 1 / (t * t + 1).squareRoot(), s = t * c
                            // Rows p and q of A (then mirrored into columns p and q).
                            for r in 0..<n {
                                let arp = mp[p * n + r], arq = mp[q * n + r]
                                mp[p * n + r] = c * arp - s * arq
                                mp[q * n + r] = s * arp + c * arq
                            }
                            for r in 0..<n { mp[r * n + p] = mp[p * n + r]; mp[r * n + q] = mp[q * n + r] }
                            mp[p * n + p] = app - t * apq
                            mp[q * n + q] = aqq + t * apq
                            mp[p * n + q] = 0; mp[q * n + p] = 0
                            for r in 0..<n {
                                let vp_ = vp[p * n + r], vq = vp[q * n + r]
                                vp[p * n + r] = c * vp_ - s * vq
                                vp[q * n + r] = s * vp_ + c * vq
                            }
                        }
                    }
                }
            }
        }
        let order = (0..<n).sorted { m[$0 * n + $0] < m[$1 * n + $1] }
        values = order.map { m[$0 * n + $0] }
        var v = [Double](repeating: 0, count: n * n)
        for (col, i) in order.enumerated() { for r in 0..<n { v[r * n + col] = vt[i * n + r] } }
        vectors = v
    }

    /// V diag(f(lambda)) V^T, e.g. the PSD square root with f(l) = sqrt(max(l, 0)).
    public func applying(_ f: (Double) -> Double) -> [Double] {
        var out = [Double](repeating: 0, count: n * n)
        let fl = values.map(f)
        for i in 0..<n {
            for k in 0..<n where fl[k] != 0 {
                let vik = vectors[i * n + k] * fl[k]
                for j in 0..<n { out[i * n + j] += vik * vectors[j * n + k] }
            }
        }
        return out
    }

    /// The PSD square root V diag(sqrt(max(lambda, 0))) V^T: tiny negative eigenvalues of a
    /// covariance (rounding, or rank below n) count as 0.
    public var psdSquareRoot: [Double] { applying { $0 > 0 ? $0.squareRoot() : 0 } }
}
