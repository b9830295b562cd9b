// Losses: closed forms for the KL and decoder terms, finite differences for every gradient,
// and the stop-gradient structure of the hybrid loss.
import Foundation
import XCTest
@testable import Shared

final class LossTests: XCTestCase {
    func testKLClosedForm() {
        // KL of equal Gaussians is 0.
        XCTAssertEqual(Losses.normalKL(mean1: 0.7, logVar1: -1.3, mean2: 0.7, logVar2: -1.3), 0, accuracy: 1e-15)
        // KL(N(a, s1^2) || N(b, s2^2)) = log(s2/s1) + (s1^2 + (a - b)^2) / (2 s2^2) - 1/2.
        let a = 0.3, s1 = 0.5, b = -0.2, s2 = 1.3
        let expected = log(s2 / s1) + (s1 * s1 + (a - b) * (a - b)) / (2 * s2 * s2) - 0.5
        XCTAssertEqual(Losses.normalKL(mean1: a, logVar1: 2 * log(s1), mean2: b, logVar2: 2 * log(s2)), expected, accuracy: 1e-14)
        // KL is not symmetric: the reverse direction differs at these numbers.
        XCTAssertGreaterThan(abs(Losses.normalKL(mean1: b, logVar1: 2 * log(s2), mean2: a, logVar2: 2 * log(s1)) - expected), 0.1)
        // d KL / d logVar2 against central differences (Double, h = 1e-5: error O(h^2) ~ 1e-10).
        for (m1, l1, m2, l2) in [(0.3, -1.0, -0.2, 0.4), (1.5, 0.2, 0.1, -2.0), (0.0, -5.0, 0.0, -5.0)] {
            let h = 1e-5
            let fd = (Losses.normalKL(mean1: m1, logVar1: l1, mean2: m2, logVar2: l2 + h)
                - Losses.normalKL(mean1: m1, logVar1: l1, mean2: m2, logVar2: l2 - h)) / (2 * h)
            XCTAssertEqual(Losses.normalKLGradLogVar2(mean1: m1, logVar1: l1, mean2: m2, logVar2: l2), fd, accuracy: 1e-7)
        }
    }

    func testNormalCDFApproximation() {
        // The tanh approximation is within 1.8e-4 of the exact CDF (measured over [-8, 8]: 1.79e-4).
        var x = -8.0
        while x <= 8 {
            let exact = 0.5 * (1 + erf(x / 2.0.squareRoot()))
            XCTAssertEqual(Losses.approxStandardNormalCDF(x), exact, accuracy: 1.8e-4)
            let h = 1e-6
            let fd = (Losses.approxStandardNormalCDF(x + h) - Losses.approxStandardNormalCDF(x - h)) / (2 * h)
            XCTAssertEqual(Losses.approxStandardNormalPDF(x), fd, accuracy: 1e-8)
            x += 0.01
        }
    }

    func testDiscretizedDecoderClosedForms() {
        // A very narrow Gaussian centred on a bin puts all its mass in it: log p ~ 0.
        for level in [0, 1, 100, 254, 255] {
            let xv = 2 * Double(level) / 255 - 1
            let (lp, _) = Losses.discretizedGaussianLogLikelihood(x: xv, mean: xv, logScale: log(1e-4))
            XCTAssertEqual(lp, 0, accuracy: 1e-9, "level \(level)")
        }
        // A wide Gaussian: p ~ bin width x density at the bin centre. At the centre x = -1/255 with
        // sigma = 1 the approximate CDF has the exact slope (its cubic term differs by 7e-4 x^3), and
        // the curvature over a bin changes p by ~ w^2/24 ~ 3e-6 relative: 1e-4 relative is ample.
        let x = 2 * 127.0 / 255 - 1
        let (lp, _) = Losses.discretizedGaussianLogLikelihood(x: x, mean: 0, logScale: 0)
        let density = exp(-x * x / 2) / (2 * Double.pi).squareRoot()
        XCTAssertEqual(exp(lp), 2.0 / 255 * density, accuracy: 1e-4 * 2.0 / 255 * density)
        // Edge bins reach infinity: at x = -1 the mass is Phi((-1 + 1/255 - mean) / sigma).
        let (lpEdge, _) = Losses.discretizedGaussianLogLikelihood(x: -1, mean: -0.5, logScale: log(0.3))
        let edgeZ: Double = (-1 + 1.0 / 255 + 0.5) / 0.3
        let exact: Double = 0.5 * (1 + erf(edgeZ / 2.0.squareRoot()))
        XCTAssertEqual(exp(lpEdge), exact, accuracy: 1.8e-4)
        let (lpTop, _) = Losses.discretizedGaussianLogLikelihood(x: 1, mean: 0.5, logScale: log(0.3))
        XCTAssertEqual(exp(lpTop), exact, accuracy: 1.8e-4)   // mirror image of the bottom edge
        // Gradient with respect to the log scale, central differences, all three branches.
        for (xv, mean, ls) in [(-1.0, -0.8, log(0.2)), (1.0, 0.9, log(0.05)), (x, 0.01, log(0.02)), (x, 0.3, 0.0)] {
            let h = 1e-5
            let fd = (Losses.discretizedGaussianLogLikelihood(x: xv, mean: mean, logScale: ls + h).0
                - Losses.discretizedGaussianLogLikelihood(x: xv, mean: mean, logScale: ls - h).0) / (2 * h)
            let an = Losses.discretizedGaussianLogLikelihood(x: xv, mean: mean, logScale: ls).1
            XCTAssertEqual(an, fd, accuracy: 1e-6 * max(1, abs(fd)), "x \(xv) mean \(mean)")
        }
        // Gaussian log density and its logVar derivative.
        let (ld, dld) = Losses.gaussianLogDensity(x: 0.4, mean: 0.1, logVar: log(0.25))
        XCTAssertEqual(ld, log(exp(-0.09 / 0.5) / (2 * Double.pi * 0.25).squareRoot()), accuracy: 1e-12)
        let fd = (Losses.gaussianLogDensity(x: 0.4, mean: 0.1, logVar: log(0.25) + 1e-6).0
            - Losses.gaussianLogDensity(x: 0.4, mean: 0.1, logVar: log(0.25) - 1e-6).0) / 2e-6
        XCTAssertEqual(dld, fd, accuracy: 1e-8)
    }

    typealias Batch = (x0: [Float], xt: [Float], eps: [Float], t: [Int], out: [Float])

    /// A small random batch: n samples, m values each; `quantised` puts x0 on 8-bit levels.
    /// Output per sample: eps_theta = eps + noise, then v in (-0.8, 0.8).
    func batch(n: Int, m: Int, schedule: Schedule, quantised: Bool, seed: UInt64) -> Batch {
        var r = RandomStream(seed: seed, purpose: .noise, index: 0)
        var x0 = [Float](), xt = [Float](), eps = [Float](), out = [Float]()
        let ts = (0..<n).map { $0 == 0 ? 0 : ($0 == 1 ? 1 : r.nextInt(below: schedule.T)) }   // t = 0 and 1 always present
        for s in 0..<n {
            let t = ts[s]
            for _ in 0..<m {
                var x = Float(2 * r.nextUniform() - 1)
                if quantised { x = Float((Double(x + 1) / 2 * 255).rounded() / 255 * 2 - 1) }
                let e = r.nextNormal()
                x0.append(x); eps.append(e)
                xt.append(Float(schedule.sqrtAlphaBar[t]) * x + Float(schedule.sqrtOneMinusAlphaBar[t]) * e)
            }
            for i in 0..<m { out.append(eps[s * m + i] + 0.3 * r.nextNormal()) }
            for _ in 0..<m { out.append(Float(1.6 * r.nextUniform() - 0.8)) }
        }
        return (x0, xt, eps, ts, out)
    }

    func centralDifference(_ loss: DiffusionLoss, _ b: Batch, _ j: Int) -> Double {
        let h: Float = 1e-3
        var o = b.out
        var scratch = [Float]()
        o[j] = b.out[j] + h
        let up = loss.evaluate(output: o, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &scratch).loss
        o[j] = b.out[j] - h
        let down = loss.evaluate(output: o, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &scratch).loss
        return (up - down) / Double((b.out[j] + h) - (b.out[j] - h))
    }

    func testHybridGradientsAgainstFiniteDifferences() throws {
        let schedule = try Schedule.make(.linear, T: 20, betaStart: 1e-3, betaEnd: 0.2)
        for decoder in [DecoderKind.gaussian, .discretized8bit] {
            let n = 4, m = 6
            let b = batch(n: n, m: m, schedule: schedule, quantised: decoder == .discretized8bit, seed: 7)
            let hybrid = DiffusionLoss(kind: .hybrid, schedule: schedule, vlbWeight: 0.05, decoder: decoder)
            var g = [Float]()
            let value = hybrid.evaluate(output: b.out, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &g)
            XCTAssertEqual(value.loss, value.simple + 0.05 * 20 * value.vlbTerm, accuracy: 1e-12)
            // v part: the gradient of the whole loss (only L_vlb depends on v). Float outputs, loss in
            // Double; h = 1e-3 makes the FD truncation error O(h^2 f''') ~ 1e-6 relative, and the
            // Float rounding of the perturbed output ~ 6e-8 / 1e-3 relative: 1e-3 relative is ample.
            var maxAn = 0.0, maxErr = 0.0
            for s in 0..<n {
                for i in 0..<m {
                    let j = s * 2 * m + m + i
                    let fd = centralDifference(hybrid, b, j)
                    maxAn = max(maxAn, abs(Double(g[j])))
                    maxErr = max(maxErr, abs(fd - Double(g[j])))
                }
            }
            XCTAssertGreaterThan(maxAn, 1e-4, "\(decoder): v gradient must be non-zero with lambda > 0")
            XCTAssertLessThanOrEqual(maxErr, 1e-3 * maxAn + 1e-7, "\(decoder): v gradient vs finite differences")

            // eps part: with the stop-gradient it is L_simple's gradient alone: bit-identical to the
            // simple loss's, which is checked against finite differences of L_simple (quadratic, so
            // the central difference is exact up to rounding: 1e-4 of the gradient scale 2/(n m)).
            let simple = DiffusionLoss(kind: .simple, schedule: schedule, decoder: decoder)
            let epsOut = (0..<n).flatMap { s in b.out[(s * 2 * m)..<(s * 2 * m + m)] }
            var gs = [Float]()
            _ = simple.evaluate(output: epsOut, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &gs)
            for s in 0..<n {
                for i in 0..<m {
                    XCTAssertEqual(g[s * 2 * m + i], gs[s * m + i], "eps gradient = L_simple's exactly")
                    let fd = centralDifference(simple, (b.x0, b.xt, b.eps, b.t, epsOut), s * m + i)
                    XCTAssertEqual(Double(gs[s * m + i]), fd, accuracy: 1e-4 * 2.0 / Double(n * m) + 1e-7)
                }
            }
            // The model mean does depend on eps_theta, so the stop-gradient is a real choice: the
            // whole hybrid loss moves with eps_theta at t > 1 by more than L_simple's gradient says.
            let j = 2 * 2 * m   // sample 2, element 0
            XCTAssertGreaterThan(abs(centralDifference(hybrid, b, j) - Double(g[j])), 1e-5)
        }
    }

    func testZeroVLBWeightGivesExactlyZeroVGradient() throws {
        let schedule = Schedule.standard()
        let b = batch(n: 5, m: 8, schedule: schedule, quantised: true, seed: 3)
        let loss = DiffusionLoss(kind: .hybrid, schedule: schedule, vlbWeight: 0, decoder: .discretized8bit)
        var g = [Float]()
        let v = loss.evaluate(output: b.out, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &g)
        for s in 0..<5 { for i in 0..<8 { XCTAssertEqual(g[s * 16 + 8 + i], 0) } }
        XCTAssertEqual(v.loss, v.simple)
        XCTAssertGreaterThan(v.vlbTerm, 0)   // still reported
    }

    func testVLBTermIsZeroForThePerfectModel() throws {
        // With eps_theta = eps, the model mean equals the true posterior mean; with v = -1,
        // Sigma_theta = beta~_t, so KL = 0 for every t > 0.
        let schedule = try Schedule.make(.cosine, T: 50)
        let loss = DiffusionLoss(kind: .hybrid, schedule: schedule, decoder: .gaussian)
        var b = batch(n: 6, m: 4, schedule: schedule, quantised: false, seed: 11)
        for s in 0..<6 { for i in 0..<4 { b.out[s * 8 + i] = b.eps[s * 4 + i]; b.out[s * 8 + 4 + i] = -1 } }
        var g = [Float]()
        for s in 1..<6 {
            let term = loss.evaluate(output: Array(b.out[(s * 8)..<(s * 8 + 8)]), x0: Array(b.x0[(s * 4)..<(s * 4 + 4)]),
                                     xt: Array(b.xt[(s * 4)..<(s * 4 + 4)]), eps: Array(b.eps[(s * 4)..<(s * 4 + 4)]),
                                     t: [b.t[s]], gradient: &g).vlbTerm
            // Float rounding of x_t and eps_theta only: the means agree to ~1e-6 relative.
            XCTAssertEqual(term, 0, accuracy: 1e-6, "t = \(b.t[s])")
        }
    }
}
