// Singular values of a real matrix by one-sided Jacobi (Hestenes 1958; Demmel & Veselic 1992):
// rotate pairs of columns a_p, a_q until all are orthogonal,
//   alpha = |a_p|^2, beta = |a_q|^2, gamma = a_p . a_q,
//   zeta = (beta - alpha) / (2 gamma), t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2)),
//   c = 1 / sqrt(1 + t^2), s = c t,   a_p <- c a_p - s a_q,  a_q <- s a_p + c a_q,
// skipping pairs with |gamma| <= 1e-15 sqrt(alpha beta); then sigma_i = |a_i|. The rotations are
// orthogonal, so sigma_i is exact to a few eps ||A|| in absolute terms, without forming A^T A
// (whose eigenvalues would lose small sigma to cancellation: sqrt(eps) instead of eps).
import Foundation

public enum SingularValues {
    /// The singular values of the rows x cols row-major matrix `a`, in descending order.
    public static func of(_ a: [Double], rows: Int, cols: Int) -> [Double] {
        precondition(a.count == rows * cols, "SingularValues: \(a.count) values for \(rows) x \(cols)")
        // Columns as contiguous rows of the transpose.
        var ct = [Double](repeating: 0, count: rows * cols)
        for i in 0..<rows { for j in 0..<cols { ct[j * rows + i] = a[i * cols + j] } }
        let m = rows
        ct.withUnsafeMutableBufferPointer { c in
            for _ in 0..<64 {
                var rotated = false
                for p in 0..<max(cols - 1, 0) {
                    for q in (p + 1)..<cols {
                        var alpha = 0.0, beta = 0.0, gamma = 0.0
                        for r in 0..<m {
                            let x = c[p * m + r], y = c[q * m + r]
                            alpha += x * x; beta += y * y; gamma += x * y
                        }
                        if gamma == 0 || abs(gamma) <= 1e-15 * (alpha * beta).squareRoot() { continue }
                        rotated = true
                        let zeta = (beta - alpha) / (2 * gamma)
                        let t = (zeta >= 0 ? 1.0 : -1.0) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
                        let cs = 1 / (1 + t * t).squareRoot(), sn = cs * t
                        for r in 0..<m {
                            let x = c[p * m + r], y = c[q * m + r]
                            c[p * m + r] = cs * x - sn * y
                            c[q * m + r] = sn * x + cs * y
                        }
                    }
                }
                if !rotated { break }
            }
        }
        var sigma = [Double](repeating: 0, count: cols)
        for j in 0..<cols {
            var s = 0.0
            for r in 0..<m { s += ct[j * m + r] * ct[j * m + r] }
            sigma[j] = s.squareRoot()
        }
        return sigma.sorted(by: >)
    }
}
