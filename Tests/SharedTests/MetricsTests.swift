// Sample-quality metrics (Sources/Shared/Metrics) and the `evaluate` tool: the eigen-solver and
// the trace of the matrix square root against closed forms, the Frechet distance of Gaussian
// samples against the distance between the distributions, the Inception-score analogue at its
// two ends and in between, k-NN precision and recall on sets whose answer is known, and the tool
// end to end on synthetic classified streams.
import Foundation
import XCTest
@testable import Shared

/// n x d rows of N(mu, L L^T): x = mu + L z, in Float.
private func gaussianRows(n: Int, mean mu: [Double], factor l: [Double], seed: UInt64) -> [Float] {
    let d = mu.count
    var rng = RandomStream(seed: seed, purpose: .toy, index: 0)
    var out = [Float](repeating: 0, count: n * d)
    var z = [Double](repeating: 0, count: d)
    for i in 0..<n {
        for j in 0..<d { z[j] = Double(rng.nextNormal()) }
        for r in 0..<d {
            var v = mu[r]
            for c in 0..<d { v += l[r * d + c] * z[c] }
            out[i * d + r] = Float(v)
        }
    }
    return out
}

private func matmul(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for k in 0..<n { for j in 0..<n { c[i * n + j] += a[i * n + k] * b[k * n + j] } } }
    return c
}

private func transpose(_ a: [Double], _ n: Int) -> [Double] {
    var t = a
    for i in 0..<n { for j in 0..<n { t[j * n + i] = a[i * n + j] } }
    return t
}

/// A random symmetric PSD n x n matrix B B^T / n of rank `rank`.
private func randomPSD(_ n: Int, rank: Int, seed: UInt64) -> [Double] {
    var rng = RandomStream(seed: seed, purpose: .toy, index: 3)
    let b = (0..<(n * rank)).map { _ in Double(rng.nextNormal()) }
    var c = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { for r in 0..<rank { c[i * n + j] += b[i * rank + r] * b[j * rank + r] / Double(n) } } }
    return c
}

private func trace(_ a: [Double], _ n: Int) -> Double { (0..<n).reduce(0) { $0 + a[$1 * n + $1] } }

final class MetricsTests: XCTestCase {
    // MARK: the eigen-solver and the matrix square root

    func testJacobiEigenDecomposesSymmetricMatrices() {
        for (n, rank, seed) in [(7, 7, UInt64(1)), (24, 24, 2), (30, 6, 3)] {
            let a = randomPSD(n, rank: rank, seed: seed)
            let e = SymmetricEigen(a, n: n)
            let scale = e.values.map(abs).max()!
            XCTAssertEqual(e.values, e.values.sorted(), "ascending")
            // V^T V = I and V diag(lambda) V^T = A.
            let vtv = matmul(transpose(e.vectors, n), e.vectors, n)
            for i in 0..<n { for j in 0..<n { XCTAssertEqual(vtv[i * n + j], i == j ? 1 : 0, accuracy: 1e-12) } }
            let back = e.applying { $0 }
            for i in 0..<(n * n) { XCTAssertEqual(back[i], a[i], accuracy: 1e-12 * scale) }
            // Rank r: n - r eigenvalues are 0 (to rounding), none clearly negative.
            XCTAssertEqual(e.values.filter { abs($0) < 1e-12 * scale }.count, n - rank, "\(e.values)")
            // The PSD square root squares back to A.
            let s = e.psdSquareRoot
            let ss = matmul(s, s, n)
            for i in 0..<(n * n) { XCTAssertEqual(ss[i], a[i], accuracy: 1e-11 * scale) }
        }
        // 2 x 2 closed form: eigenvalues (a + c)/2 -+ sqrt(((a - c)/2)^2 + b^2).
        let e = SymmetricEigen([2, 1, 1, 3], n: 2)
        XCTAssertEqual(e.values[0], 2.5 - 1.25.squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(e.values[1], 2.5 + 1.25.squareRoot(), accuracy: 1e-15)
    }

    func testSingularValuesClosedForms() {
        // Diagonal times an orthogonal (rotation) matrix: singular values |d_i|.
        let c = cos(0.3), s = sin(0.3)
        let a: [Double] = [3 * c, -3 * s, 0, 0.5 * s, 0.5 * c, 0, 0, 0, -2]
        let sv = SingularValues.of(a, rows: 3, cols: 3)
        for (u, v) in zip(sv, [3.0, 2.0, 0.5]) { XCTAssertEqual(u, v, accuracy: 1e-14) }
        // Rank 1, u v^T: one singular value |u| |v|, the rest 0 (to eps, not sqrt(eps)).
        let u: [Double] = [1, 2, 2], w: [Double] = [3, 0, 4]
        let r1 = SingularValues.of((0..<9).map { u[$0 / 3] * w[$0 % 3] }, rows: 3, cols: 3)
        XCTAssertEqual(r1[0], 15, accuracy: 1e-13)
        XCTAssertEqual(r1[1], 0, accuracy: 1e-14)
        XCTAssertEqual(r1[2], 0, accuracy: 1e-14)
    }

    func testTraceOfMatrixSquareRootClosedForms() {
        // Commuting (diagonal): sum sqrt(a_i c_i).
        XCTAssertEqual(FrechetDistance.traceSqrtProduct([4, 0, 0, 9], [1, 0, 0, 16], dimension: 2), 2 + 12, accuracy: 1e-13)
        // Non-commuting 2 x 2: the eigenvalues l1, l2 of M = C1^1/2 C2 C1^1/2 give
        // (sqrt l1 + sqrt l2)^2 = tr M + 2 sqrt(det M) = tr(C1 C2) + 2 sqrt(det C1 det C2).
        let c1: [Double] = [2, 1, 1, 3], c2: [Double] = [1, -0.5, -0.5, 2]
        let tr12 = trace(matmul(c1, c2, 2), 2)
        let det1 = 2.0 * 3 - 1, det2 = 1.0 * 2 - 0.25
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(c1, c2, dimension: 2), (tr12 + 2 * (det1 * det2).squareRoot()).squareRoot(), accuracy: 1e-13)
        // ... and symmetric in its arguments (tr (C1 C2)^1/2 = tr (C2 C1)^1/2).
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(c2, c1, dimension: 2), FrechetDistance.traceSqrtProduct(c1, c2, dimension: 2), accuracy: 1e-13)
        // Singular C2 = v v^T: tr (C1^1/2 v v^T C1^1/2)^1/2 = |C1^1/2 v| = sqrt(v^T C1 v).
        let v: [Double] = [1, -2]
        let vc1v = (0..<4).reduce(0.0) { $0 + v[$1 / 2] * c1[$1] * v[$1 % 2] }
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(c1, [1, -2, -2, 4], dimension: 2), vc1v.squareRoot(), accuracy: 1e-13)
        // C2 = a C1: sqrt(a) tr C1; C2 = C1 of rank 8 in 30 dimensions: tr C1 to eps.
        let c = randomPSD(20, rank: 20, seed: 4)
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(c, c.map { 2.25 * $0 }, dimension: 20), 1.5 * trace(c, 20), accuracy: 1e-12 * trace(c, 20))
        let low = randomPSD(30, rank: 8, seed: 5)
        XCTAssertEqual(FrechetDistance.traceSqrtProduct(low, low, dimension: 30), trace(low, 30), accuracy: 1e-12 * trace(low, 30))
    }

    // MARK: the Frechet distance

    /// FD of large samples against the FD of the distributions: diagonal covariances with a mean
    /// shift, and a covariance rotated against the other (non-commuting). Tolerance: 10
    /// replicate pairs; their mean must lie within 4 standard errors (their spread / sqrt(10)) plus
    /// the known O(1/n) bias (tr(C1 + C2) / n from the mean term; the same order again for the
    /// covariance term) of the distributions' value.
    func testFrechetDistanceOfGaussianSamplesMatchesTheDistributions() {
        let n = 50_000, replicates = 10
        let th = 0.5, c = cos(th), s = sin(th)
        // Distribution pairs in 3-D: (mu1, sqrt factor L1, mu2, L2, analytic FD).
        let d1: [Double] = [1, 2, 0.5], d2: [Double] = [2, 1, 1]
        let diagFD = 1 + 1 + 0.25 + zip(d1, d2).reduce(0) { $0 + $1.0 + $1.1 - 2 * ($1.0 * $1.1).squareRoot() }
        // Rotated: C1 = diag(1, 2, 0.5); C2 = R diag(3, 0.5, 0.5) R^T, R a rotation in the (0, 1) plane.
        // The (0,1) blocks do not commute: 2 x 2 closed form there, sqrt(0.5 * 0.5) in the last axis.
        let b1: [Double] = [1, 0, 0, 2]
        let b2: [Double] = [3 * c * c + 0.5 * s * s, (3 - 0.5) * c * s, (3 - 0.5) * c * s, 3 * s * s + 0.5 * c * c]
        let cross2 = (trace(matmul(b1, b2, 2), 2) + 2 * ((1 * 2) * (3 * 0.5)).squareRoot()).squareRoot()
        let rotFD = (1 + 2 + 0.5) + (3 + 0.5 + 0.5) - 2 * (cross2 + 0.5)
        let cases: [(String, [Double], [Double], [Double], [Double], Double, Double)] = [
            ("diagonal", [0, 0, 0], [1, 0, 0, 0, 2.squareRoot(), 0, 0, 0, 0.5.squareRoot()],
             [1, -1, 0.5], [2.squareRoot(), 0, 0, 0, 1, 0, 0, 0, 1], diagFD, 3.5 + 4),
            ("rotated", [0, 0, 0], [1, 0, 0, 0, 2.squareRoot(), 0, 0, 0, 0.5.squareRoot()],
             [0, 0, 0], [c * 3.squareRoot(), -s * 0.5.squareRoot(), 0, s * 3.squareRoot(), c * 0.5.squareRoot(), 0, 0, 0, 0.5.squareRoot()],
             rotFD, 3.5 + 4),
        ]
        for (name, mu1, l1, mu2, l2, exact, traces) in cases {
            var values: [Double] = []
            for r in 0..<replicates {
                let a = gaussianRows(n: n, mean: mu1, factor: l1, seed: UInt64(100 + 2 * r))
                let b = gaussianRows(n: n, mean: mu2, factor: l2, seed: UInt64(101 + 2 * r))
                let fd = FrechetDistance.between(GaussianMoments(rows: a, count: n, dimension: 3), GaussianMoments(rows: b, count: n, dimension: 3))
                values.append(fd.distance)
            }
            let mean = values.reduce(0, +) / Double(replicates)
            let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(replicates - 1)).squareRoot()
            let tolerance = 4 * sd / Double(replicates).squareRoot() + 2 * traces / Double(n)
            XCTAssertEqual(mean, exact, accuracy: tolerance, "\(name): replicates \(values), analytic \(exact)")
            XCTAssertLessThan(tolerance, 0.05 * exact, "\(name): the test must be able to tell a wrong FD")
        }
    }

    /// Exact cases from the same points: FD(a, a) = 0, FD(a, a + delta) = |delta|^2,
    /// FD(a, 2a) = |mu|^2 + tr(C) (tr C + tr 4C - 2 tr 2C), to rounding.
    func testFrechetDistanceExactCases() {
        let n = 500, d = 16
        var rng = RandomStream(seed: 11, purpose: .toy, index: 0)
        var a = [Float](repeating: 0, count: n * d)
        for i in 0..<n {  // correlated, non-zero mean
            let z = (0..<d).map { _ in Float(rng.nextNormal()) }
            for j in 0..<d { a[i * d + j] = 0.5 + z[j] + (j > 0 ? 0.7 * z[j - 1] : 0) }
        }
        let m = GaussianMoments(rows: a, count: n, dimension: d)
        let scale = 2 * trace(m.covariance, d)
        XCTAssertEqual(FrechetDistance.between(m, m).distance, 0, accuracy: 1e-9 * scale)
        let doubled = GaussianMoments(rows: a.map { 2 * $0 }, count: n, dimension: d)
        let mu2 = m.mean.reduce(0) { $0 + $1 * $1 }
        XCTAssertEqual(FrechetDistance.between(m, doubled).distance, mu2 + trace(m.covariance, d), accuracy: 1e-9 * (mu2 + scale))
        // The shift is applied in Float: rounding moves the covariance by ~1e-7 relative.
        let delta = (0..<d).map { Float($0 % 5) - 2 }
        let shifted = GaussianMoments(rows: a.enumerated().map { $0.element + delta[$0.offset % d] }, count: n, dimension: d)
        let d2 = delta.reduce(0) { $0 + Double($1 * $1) }
        XCTAssertEqual(FrechetDistance.between(m, shifted).distance, d2, accuracy: 1e-5 * (d2 + scale))
        // Fewer samples than dimensions (singular covariances): FD(a, a) is still 0 to rounding.
        let few = GaussianMoments(rows: Array(a.prefix(10 * d)), count: 10, dimension: d)
        XCTAssertEqual(FrechetDistance.between(few, few).distance, 0, accuracy: 1e-9 * 2 * trace(few.covariance, d))
    }

    // MARK: the Inception-score analogue

    func testInceptionScoreEnds() {
        // Confident and uniform over K classes: K (p(y|x) one-hot to e^-40).
        let k = 10, n = 1000
        var confident = [Float](repeating: 0, count: n * k)
        for i in 0..<n { confident[i * k + i % k] = 40 }
        XCTAssertEqual(InceptionScore.of(logits: confident, count: n, classes: k), Double(k), accuracy: 1e-9)
        // Every row the same distribution: 1.
        let row: [Float] = [0.3, -1.2, 2.5, 0, 0.7]
        let same = (0..<(200 * 5)).map { row[$0 % 5] }
        XCTAssertEqual(InceptionScore.of(logits: same, count: 200, classes: 5), 1, accuracy: 1e-12)
        // In between: two classes, half the rows (q, 1 - q), half (1 - q, q): p(y) uniform and
        // KL = log 2 - H(q), IS = 2 exp(-H(q)).
        let q = 0.8, l = Float(log(q / (1 - q)))
        var half = [Float]()
        for i in 0..<100 { half += i % 2 == 0 ? [l, 0] : [0, l] }
        let h = -(q * log(q) + (1 - q) * log(1 - q))
        XCTAssertEqual(InceptionScore.of(logits: half, count: 100, classes: 2), 2 * exp(-h), accuracy: 1e-6)
    }

    // MARK: precision and recall

    /// Points of a square lattice with spacing 1 around (cx, cy), as 2-D rows.
    private func lattice(_ cx: Float, _ cy: Float, side: Int = 10) -> [Float] {
        var p = [Float]()
        for i in 0..<side { for j in 0..<side { p += [cx + Float(i), cy + Float(j)] } }
        return p
    }

    private func precisionRecall(_ s: [Float], _ r: [Float], width: Int = 2, k: Int = 3, block: Int? = nil) -> (Double, Double) {
        let mean = (0..<width).map { j in (0..<(r.count / width)).reduce(0.0) { $0 + Double(r[$1 * width + j]) } / Double(r.count / width) }
        let rm = PrecisionRecall.Manifold(rows: r, count: r.count / width, width: width, k: k, origin: mean, blockRows: block)
        let sm = PrecisionRecall.Manifold(rows: s, count: s.count / width, width: width, k: k, origin: mean, blockRows: block)
        let pr = PrecisionRecall.compute(samples: sm, reference: rm, blockRows: block)
        return (pr.precision, pr.recall)
    }

    func testPrecisionRecallKnownAnswers() {
        let a = lattice(0, 0), b = lattice(100, 0), c = lattice(0, 100)
        // Disjoint clusters: nothing of either set near the other.
        var pr = precisionRecall(a, b)
        XCTAssertEqual(pr.0, 0); XCTAssertEqual(pr.1, 0)
        // The same set: every point is its own neighbour at distance 0.
        pr = precisionRecall(a, a)
        XCTAssertEqual(pr.0, 1); XCTAssertEqual(pr.1, 1)
        // Half overlap: samples = a + c, reference = a + b: half of each set lies on the other.
        pr = precisionRecall(a + c, a + b)
        XCTAssertEqual(pr.0, 0.5); XCTAssertEqual(pr.1, 0.5)
        // A quarter of the samples: all of them on the reference (precision 1), covering only the
        // part of the reference they lie on, a 5 x 5 corner of the 10 x 10 lattice, and the
        // reference points within their (larger) k-NN radius: sqrt(2) at k = 3 reaches one lattice
        // step beyond the corner, 6 x 6 = 36 of 100.
        let corner = (0..<25).flatMap { i -> [Float] in [Float(i / 5), Float(i % 5)] }
        pr = precisionRecall(corner, a)
        XCTAssertEqual(pr.0, 1)
        XCTAssertEqual(pr.1, 0.36, accuracy: 1e-12)
    }

    /// k-NN radii on a line (0, 1, 3, 7, 15): k = 1 -> 1, 1, 2, 4, 8; k = 2 -> 3, 2, 3, 6, 12.
    func testNearestNeighbourRadii() {
        let x: [Float] = [0, 1, 3, 7, 15]
        let m1 = PrecisionRecall.Manifold(rows: x, count: 5, width: 1, k: 1, origin: [0])
        XCTAssertEqual(m1.radiiSquared, [1, 1, 4, 16, 64])
        let m2 = PrecisionRecall.Manifold(rows: x, count: 5, width: 1, k: 2, origin: [5], blockRows: 2)
        XCTAssertEqual(m2.radiiSquared, [9, 4, 9, 36, 144])
    }

    /// Blocked DGEMM distances against a brute-force count on random points (blocks smaller than
    /// the sets, so every block boundary is crossed), and two different distributions.
    func testPrecisionRecallMatchesBruteForce() {
        let d = 5, n = 300, m = 250, k = 3
        var rng = RandomStream(seed: 21, purpose: .toy, index: 0)
        let s = (0..<(n * d)).map { i -> Float in Float(rng.nextNormal()) * (i % d == 0 ? 2 : 1) }
        let r = (0..<(m * d)).map { _ in Float(rng.nextNormal()) + 0.3 }
        func dist2(_ a: [Float], _ i: Int, _ b: [Float], _ j: Int) -> Double {
            (0..<d).reduce(0.0) { let e = Double(a[i * d + $1]) - Double(b[j * d + $1]); return $0 + e * e }
        }
        func radii(_ a: [Float], _ count: Int) -> [Double] {
            (0..<count).map { i in (0..<count).filter { $0 != i }.map { dist2(a, i, a, $0) }.sorted()[k - 1] }
        }
        let rs = radii(s, n), rr = radii(r, m)
        let precision = Double((0..<n).filter { i in (0..<m).contains { dist2(s, i, r, $0) <= rr[$0] } }.count) / Double(n)
        let recall = Double((0..<m).filter { j in (0..<n).contains { dist2(r, j, s, $0) <= rs[$0] } }.count) / Double(m)
        for block in [7, 64, 1000] {
            let got = precisionRecall(s, r, width: d, k: k, block: block)
            XCTAssertEqual(got.0, precision, accuracy: 1.5 / Double(n), "block \(block)")   // one boundary case at most
            XCTAssertEqual(got.1, recall, accuracy: 1.5 / Double(m), "block \(block)")
        }
        XCTAssertTrue(precision > 0.3 && precision < 0.99 && recall > 0.3 && recall < 0.99, "\(precision) \(recall): a case that tells")
    }

    // MARK: the tool

    /// A classified frame: features [n, w], logits [n, k] (taken from the features' first k
    /// columns), pred, optional y.
    private func classified(_ features: [Float], n: Int, w: Int, k: Int, pred: [Int64], y: [Int64]?) -> Frame {
        var f = Frame(metadata: ["kind": "classified"])
        f["logits"] = Tensor((0..<(n * k)).map { features[($0 / k) * w + $0 % k] }, shape: [n, k])
        f["pred"] = Tensor(pred, shape: [n])
        f["features"] = Tensor(features, shape: [n, w])
        if let y { f["y"] = Tensor(y, shape: [n]) }
        return f
    }

    private func set(_ frames: [Frame], name: String) throws -> ClassifiedSet {
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent(name).path
        try Frame.save(frames, path: path)
        return try ClassifiedSet.read(FrameReader(path: path))
    }

    func testEvaluateToolFiguresAndFloor() throws {
        let dir = temporaryDirectory()
        let w = 6, k = 3
        let ref = gaussianRows(n: 400, mean: [0, 0, 0, 0, 0, 0], factor: (0..<36).map { $0 % 7 == 0 ? 1 : 0 }, seed: 1)
        let real = gaussianRows(n: 300, mean: [0, 0, 0, 0, 0, 0], factor: (0..<36).map { $0 % 7 == 0 ? 1 : 0 }, seed: 2)
        let fake = gaussianRows(n: 120, mean: [0.5, 0, 0, 0, 0, -0.5], factor: (0..<36).map { $0 % 7 == 0 ? 0.7 : 0 }, seed: 3)
        let yRef = (0..<400).map { Int64($0 % k) }, yFake = (0..<120).map { Int64($0 % k) }
        let predFake = yFake.enumerated().map { $0.offset < 90 ? $0.element : ($0.element + 1) % Int64(k) }   // 75 % as labelled
        let refFrames = [classified(ref, n: 400, w: w, k: k, pred: yRef, y: yRef)]
        // The samples in two frames behind a schedule frame, as a pipeline may deliver them.
        var schedule = Frame(metadata: ["kind": "schedule"]); schedule["beta"] = Tensor([Float(0.1)], shape: [1])
        let fakeFrames = [schedule,
                          classified(Array(fake.prefix(50 * w)), n: 50, w: w, k: k, pred: Array(predFake.prefix(50)), y: Array(yFake.prefix(50))),
                          classified(Array(fake.dropFirst(50 * w)), n: 70, w: w, k: k, pred: Array(predFake.dropFirst(50)), y: Array(yFake.dropFirst(50)))]
        let realFrames = [classified(real, n: 300, w: w, k: k, pred: (0..<300).map { Int64($0 % k) }, y: nil)]
        try Frame.save(refFrames, path: dir.appendingPathComponent("ref.st").path)
        try Frame.save(fakeFrames, path: dir.appendingPathComponent("fake.st").path)
        try Frame.save(realFrames, path: dir.appendingPathComponent("real.st").path)
        let refPath = dir.appendingPathComponent("ref.st").path, realPath = dir.appendingPathComponent("real.st").path

        let r = try runTool("evaluate", ["--reference", refPath, "--floor", realPath, "--json"], stdinFile: dir.appendingPathComponent("fake.st").path)
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let sample = try XCTUnwrap((json["sets"] as? [[String: Any]])?.first)
        let floor = try XCTUnwrap(json["floor"] as? [String: Any])
        // What the library computes on the same data (the floor: the first 120 real samples).
        let reference = try QualityReference(set(refFrames, name: "r.st"), k: 3)
        let want = try reference.figures(for: set(Array(fakeFrames.dropFirst()), name: "f.st"))
        let wantFloor = try reference.figures(for: set(realFrames, name: "x.st").prefix(120))
        XCTAssertEqual(sample["n"] as? Int, 120)
        XCTAssertEqual(sample["as_labelled"] as? Double, 0.75)
        // (JSONSerialization may parse the last digit of a shortest-form number differently.)
        func same(_ v: Any?, _ want: Double, _ what: String) {
            guard let v = v as? Double else { return XCTFail("\(what): \(String(describing: v)) is not a number") }
            XCTAssertEqual(v, want, accuracy: 1e-14 * max(1, abs(want)), what)
        }
        same(sample["fd_features"], want.fdFeatures, "fd_features")
        same(sample["fd_logits"], want.fdLogits, "fd_logits")
        same(sample["is"], want.inceptionScore, "is")
        same(sample["precision"], want.precision, "precision")
        same(sample["recall"], want.recall, "recall")
        XCTAssertEqual(floor["n"] as? Int, 120)
        XCTAssertTrue(floor["as_labelled"] is NSNull, "the real set has no 'y'")
        same(floor["fd_features"], wantFloor.fdFeatures, "floor fd_features")
        same(floor["recall"], wantFloor.recall, "floor recall")
        XCTAssertEqual((json["reference"] as? [String: Any])?["accuracy"] as? Double, 1)
        // Real data from the reference's distribution are closer than the shifted, narrower samples.
        XCTAssertLessThan(wantFloor.fdFeatures, want.fdFeatures)
        XCTAssertGreaterThan(wantFloor.recall, want.recall)

        // The text: one line per figure, a column per set.
        let t = try runTool("evaluate", ["--reference", refPath, "--floor", realPath, "-"], stdinFile: dir.appendingPathComponent("fake.st").path)
        XCTAssertEqual(t.status, 0, t.stderr)
        let lines = String(decoding: t.stdout, as: UTF8.self).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        func row(_ name: String) -> [String] { lines.first { $0.first == name } ?? [] }
        XCTAssertEqual(row("figure"), ["figure", "stdin", "floor"])
        XCTAssertEqual(row("n"), ["n", "120", "120"])
        XCTAssertEqual(row("as-labelled"), ["as-labelled", "0.7500", "-"])
        XCTAssertEqual(Double(row("fd-features")[1])!, want.fdFeatures, accuracy: 1e-5 * want.fdFeatures)
        for name in ["fd-logits", "is", "precision", "recall"] { XCTAssertEqual(row(name).count, 3, name) }

        // --limit: the first N samples.
        let l = try runTool("evaluate", ["--reference", refPath, "--limit", "50", "--json", dir.appendingPathComponent("fake.st").path])
        XCTAssertEqual(l.status, 0, l.stderr)
        let lj = try XCTUnwrap(JSONSerialization.jsonObject(with: l.stdout) as? [String: Any])
        let first = try XCTUnwrap((lj["sets"] as? [[String: Any]])?.first)
        XCTAssertEqual(first["n"] as? Int, 50)
        same(first["fd_features"], try reference.figures(for: set([fakeFrames[1]], name: "g.st")).fdFeatures, "--limit 50")
    }

    func testEvaluateToolErrorsAreOneLine() throws {
        let dir = temporaryDirectory()
        func save(_ frames: [Frame], _ name: String) throws -> String {
            let p = dir.appendingPathComponent(name).path
            try Frame.save(frames, path: p)
            return p
        }
        let x = gaussianRows(n: 40, mean: [0, 0, 0, 0], factor: (0..<16).map { $0 % 5 == 0 ? 1 : 0 }, seed: 4)
        let pred = [Int64](repeating: 0, count: 40)
        let ref = try save([classified(x, n: 40, w: 4, k: 2, pred: pred, y: nil)], "ref.st")
        let narrow = try save([classified(Array(x.prefix(20 * 4)).enumerated().filter { $0.offset % 4 != 3 }.map(\.element),
                                          n: 20, w: 3, k: 2, pred: Array(pred.prefix(20)), y: nil)], "narrow.st")
        var bad = x; bad[40 + 18] = .nan   // element 18 of the second frame
        let nonFinite = try save([classified(Array(x.prefix(40)), n: 10, w: 4, k: 2, pred: Array(pred.prefix(10)), y: nil),
                                  classified(Array(bad.suffix(30 * 4)), n: 30, w: 4, k: 2, pred: Array(pred.prefix(30)), y: nil)], "nan.st")
        var notClassified = Frame(metadata: ["kind": "batch"]); notClassified["x"] = Tensor(x, shape: [40, 4])
        let batch = try save([notClassified], "batch.st")
        let tiny = try save([classified(Array(x.prefix(8)), n: 2, w: 4, k: 2, pred: [0, 0], y: nil)], "tiny.st")
        let cases: [(String, [String], String?, String)] = [
            ("width mismatch", ["--reference", ref, narrow], nil, "has 3 features per sample, the reference \(ref) has 4"),
            ("missing reference", ["--reference", dir.appendingPathComponent("none.st").path, ref], nil, "cannot open"),
            ("no --reference", [ref], nil, "--reference"),
            ("empty input", ["--reference", ref], "/dev/null", "stdin: no classified frames (empty stream)"),
            ("non-finite features", ["--reference", ref, nonFinite], nil, "frame 2: 'features' holds a non-finite value (nan) at element 18"),
            ("not classified", ["--reference", ref, batch], nil, "frame 1: not a classified frame"),
            ("too few for k", ["--reference", ref, tiny], nil, "2 samples, precision and recall with k = 3 need at least 4"),
            ("floor too small", ["--reference", ref, "--floor", narrow, ref], nil, "fewer than the 40 of the sets"),
            ("bad k", ["--reference", ref, "-k", "0", ref], nil, "-k must be in 1 ... 256"),
        ]
        for (name, args, stdin, message) in cases {
            let r = try runTool("evaluate", args, stdinFile: stdin)
            XCTAssertEqual(r.status, 1, name)
            XCTAssertTrue(r.stderr.hasPrefix("evaluate: ") && r.stderr.contains(message), "\(name): \(r.stderr)")
            XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, "\(name): one line: \(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty, name)
        }
    }
}
