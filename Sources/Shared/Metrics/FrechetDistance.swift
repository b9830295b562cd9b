// The Frechet distance between Gaussians fitted to two sets of feature vectors (Heusel et al.
// 2017, eq. 6; Dowson & Landau 1982 for the closed form):
//   FD = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)
// with the sample means and the unbiased sample covariances (divisor n - 1), all in Double.
// The last trace: with S_i = C_i^1/2 (PSD square roots from SymmetricEigen, negative eigenvalues
// clamped to 0), (S2 S1)^T (S2 S1) = S1 C2 S1, so tr((S1 C2 S1)^1/2) = sum of the singular values
// of S2 S1 (one-sided Jacobi, SingularValues.swift). That avoids the eigenvalues of S1 C2 S1, whose
// zeros when C1 or C2 is singular (fewer samples than dimensions) come out as +-eps and add sqrt(eps)
// each: at n = 100, W = 256 this is within 3e-8 (relative) of a rank-exact evaluation (the spectrum
// of X_c C2 X_c^T / (n - 1), 100 x 100), the eigenvalue route (numpy eigvalsh) 5e-6.
// The estimate is biased upwards at small n (by about tr terms of order d / n): compare sets of
// equal n only.
import COpenBLAS
import Foundation

/// Mean and covariance of the rows of an n x d matrix.
public struct GaussianMoments: Sendable {
    public let dimension: Int
    public let count: Int
    public let mean: [Double]
    /// d x d row-major, divisor n - 1.
    public let covariance: [Double]

    /// Two passes in Double: the mean, then C = X_c^T X_c / (n - 1) of the centred rows (DSYRK).
    /// Needs n >= 2.
    public init(rows x: [Float], count n: Int, dimension d: Int) {
        precondition(x.count == n * d && n >= 2 && d >= 1, "GaussianMoments: \(x.count) values for \(n) x \(d)")
        dimension = d; count = n
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(x[i * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var centred = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { centred[i * d + j] = Double(x[i * d + j]) - mu[j] } }
        var c = [Double](repeating: 0, count: d * d)
        BLAS.setThreads(BLAS.maxThreads)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(n), 1 / Double(n - 1),
                    centred, Int32(d), 0, &c, Int32(d))
        for i in 0..<d { for j in 0..<i { c[i * d + j] = c[j * d + i] } }   // mirror the upper triangle
        mean = mu; covariance = c
    }

    public init(mean: [Double], covariance: [Double], count: Int) {
        precondition(covariance.count == mean.count * mean.count, "GaussianMoments: covariance is not d x d")
        self.mean = mean; self.covariance = covariance; self.count = count; dimension = mean.count
    }

    /// C^1/2 (PSD).
    public var covarianceSquareRoot: [Double] { SymmetricEigen(covariance, n: dimension).psdSquareRoot }
}

public enum FrechetDistance {
    /// The terms of FD.
    public struct Value: Sendable {
        /// |mu1 - mu2|^2
        public var meanTerm: Double
        /// tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2): the squared Bures distance, >= 0 (a
        /// rounding residue below 0, e.g. -1e-11 for a set against itself, is returned as 0)
        public var covarianceTerm: Double
        public var distance: Double { meanTerm + covarianceTerm }
    }

    /// tr((C1^1/2 C2 C1^1/2)^1/2) from the square roots S1 = C1^1/2, S2 = C2^1/2: the sum of the
    /// singular values of S2 S1.
    public static func traceSqrtProduct(sqrt1: [Double], sqrt2: [Double], dimension d: Int) -> Double {
        var p = [Double](repeating: 0, count: d * d)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(d), Int32(d), Int32(d), 1,
                    sqrt2, Int32(d), sqrt1, Int32(d), 0, &p, Int32(d))
        return SingularValues.of(p, rows: d, cols: d).reduce(0, +)
    }

    /// tr((C1^1/2 C2 C1^1/2)^1/2) of two PSD d x d matrices.
    public static func traceSqrtProduct(_ c1: [Double], _ c2: [Double], dimension d: Int) -> Double {
        traceSqrtProduct(sqrt1: SymmetricEigen(c1, n: d).psdSquareRoot, sqrt2: SymmetricEigen(c2, n: d).psdSquareRoot, dimension: d)
    }

    /// FD between the Gaussians of `a` and `b` (same dimension). `sqrtA`/`sqrtB`: their covariance
    /// square roots when already known (a reference used for several sets).
    public static func between(_ a: GaussianMoments, _ b: GaussianMoments, sqrtA: [Double]? = nil, sqrtB: [Double]? = nil) -> Value {
        precondition(a.dimension == b.dimension, "FrechetDistance: dimensions \(a.dimension) and \(b.dimension)")
        let d = a.dimension
        var m = 0.0
        for j in 0..<d { let e = a.mean[j] - b.mean[j]; m += e * e }
        var tr = 0.0
        for j in 0..<d { tr += a.covariance[j * d + j] + b.covariance[j * d + j] }
        let cross = traceSqrtProduct(sqrt1: sqrtA ?? a.covarianceSquareRoot, sqrt2: sqrtB ?? b.covarianceSquareRoot, dimension: d)
        return Value(meanTerm: m, covarianceTerm: max(0, tr - 2 * cross))
    }
}
